//! Scaled dot-product attention (Vaswani et al. 2017, section 3.2) for all heads at once:
//! `softmax(scale · Q Kᵀ + bias)`, dropout on the weights, times `V`.
//!
//! Composed from candle operations, each head of each sentence is a separate small matrix
//! product run one after another on one thread, and the scores, weights and dropped weights
//! are each a tensor kept for the backward pass. This op runs one sentence per task on all
//! cores, keeps nothing (the backward pass recomputes the weights from `Q` and `K`, as
//! FlashAttention does), and writes its output with the heads already merged.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Storage, Tensor, WithDType};
use rayon::prelude::*;

use super::dropout::{apply_dropout, DropoutMask};
use super::matmul::{matmul, Strided, Threads};
use super::rows::{contiguous, is_fused, with_elements, Real};
use super::softmax::softmax_last_dim;

/// Attention of `queries` over `keys` and `values`, head by head.
///
/// `scale` multiplies the scores (usually `1 / sqrt(head_dim)`); `bias` is added to them
/// before the softmax; `dropout` masks the weights. With `key_rows`, query rows read other
/// rows of the keys and values than their own ([`KeyRows`]: incremental decoding, which is
/// inference only: the fused op has no backward pass through them, and says so if asked for
/// one). A bias
/// that needs a gradient (a learned one, as T5's) makes the op fall back to composed candle
/// operations.
///
/// # Shapes
/// - `queries`: `(b, heads, q_len, head_dim)`; `keys`, `values`: `(b, heads, k_len, head_dim)`,
///   or `(rows, heads, k_len, head_dim)` with `key_rows` (indices below `rows`); on the
///   CPU they are read in place when each head's `k_len × head_dim` block is contiguous (a
///   decoding cache's buffers, which keep room for more positions after each block);
/// - `bias`: broadcastable to `(b, heads, q_len, k_len)`;
/// - `dropout`: a mask over `(b, heads, q_len, k_len)`;
/// - returns `(b, q_len, heads · head_dim)`: the heads merged.
pub fn attention(
    queries: &Tensor,
    keys: &Tensor,
    values: &Tensor,
    scale: f64,
    bias: Option<&Tensor>,
    dropout: Option<&DropoutMask>,
    key_rows: Option<KeyRows>,
) -> Result<Tensor> {
    let (b, heads, q_len, head_dim) = queries.dims4()?;
    let (rows, k_len) = (keys.dim(0)?, keys.dim(2)?);
    let rows_fit = key_rows.map_or(rows == b, |key_rows| key_rows.fits(b, k_len, rows));
    if !rows_fit || keys.dims() != [rows, heads, k_len, head_dim] || values.dims() != keys.dims() {
        bail!("attention: queries {:?}, keys {:?}, values {:?}", queries.dims(), keys.dims(), values.dims())
    }
    let bias = bias.map(|bias| bias.broadcast_as((b, heads, q_len, k_len))).transpose()?;
    let constant_bias = bias.as_ref().is_none_or(|bias| !bias.track_op() && bias.dtype() == queries.dtype());
    let fused = is_fused(queries) && constant_bias && dropout.is_none_or(DropoutMask::is_on_host);
    // The fused op follows keys position by position for one query only.
    let in_place = match key_rows {
        Some(KeyRows::PerPosition { .. }) => fused && q_len == 1,
        _ => fused,
    };
    if in_place {
        let op = Attention {
            dims: Dims { b, heads, q_len, k_len, head_dim },
            scale,
            bias,
            dropout: dropout.cloned(),
            key_rows: key_rows.map(OwnedKeyRows::from),
        };
        queries.contiguous()?.apply_op3(&with_contiguous_blocks(keys)?, &with_contiguous_blocks(values)?, op)
    } else if let Some(key_rows) = key_rows {
        let bias = bias.as_ref();
        attention(queries, &key_rows.gather(keys)?, &key_rows.gather(values)?, scale, bias, dropout, None)
    } else {
        let mut scores = (queries * scale)?.matmul(&keys.t()?)?;
        if let Some(bias) = bias {
            scores = (scores + bias)?;
        }
        let mut weights = softmax_last_dim(&scores)?;
        if let Some(mask) = dropout {
            weights = apply_dropout(&weights, mask)?;
        }
        weights.matmul(values)?.transpose(1, 2)?.reshape((b, q_len, heads * head_dim))
    }
}

/// Which rows of the keys and values the query rows read, when not their own.
#[derive(Debug, Clone, Copy)]
pub enum KeyRows<'a> {
    /// Query row `i` reads key row `rows[i]`: the hypotheses of one sentence share its
    /// cross-attention keys and values.
    PerRow(&'a [u32]),
    /// Query row `i` reads position `p` from key row `rows[i * stride + p]`: a decoding cache
    /// whose reorderings move this index instead of the keys and values
    /// ([`SelfKeyValues`](crate::kv_cache::SelfKeyValues)).
    PerPosition {
        /// `(query rows, stride)`, row-major; positions from `k_len` on are not read.
        rows: &'a [u32],
        /// Positions per query row in `rows`.
        stride: usize,
    },
}

impl KeyRows<'_> {
    /// Whether `b` query rows over `k_len` positions read key rows below `held` only.
    fn fits(&self, b: usize, k_len: usize, held: usize) -> bool {
        let below = |rows: &[u32]| rows.iter().all(|&row| (row as usize) < held);
        match *self {
            KeyRows::PerRow(rows) => rows.len() == b && below(rows),
            KeyRows::PerPosition { rows, stride } => {
                k_len <= stride
                    && rows.len() == b * stride
                    && rows.chunks_exact(stride).all(|row| below(&row[..k_len]))
            }
        }
    }

    /// The rows of `xs` (keys or values, `(rows, heads, k_len, head_dim)`) as the query rows
    /// read them, gathered into `(b, heads, k_len, head_dim)`.
    pub fn gather(&self, xs: &Tensor) -> Result<Tensor> {
        match *self {
            KeyRows::PerRow(rows) => xs.index_select(&Tensor::new(rows, xs.device())?, 0),
            KeyRows::PerPosition { rows, stride } => {
                let (held, heads, k_len, head_dim) = xs.dims4()?;
                let b = rows.len() / stride;
                let index: Vec<u32> = rows
                    .chunks_exact(stride)
                    .flat_map(|row| (0..k_len).map(move |p| row[p] * k_len as u32 + p as u32))
                    .collect();
                let by_position =
                    xs.transpose(1, 2)?.contiguous()?.reshape((held * k_len, heads * head_dim))?;
                by_position
                    .index_select(&Tensor::new(index, xs.device())?, 0)?
                    .reshape((b, k_len, heads, head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            }
        }
    }
}

/// [`KeyRows`] kept by the op.
#[derive(Debug)]
struct OwnedKeyRows {
    rows: Vec<u32>,
    /// `None` for [`KeyRows::PerRow`].
    stride: Option<usize>,
}

impl From<KeyRows<'_>> for OwnedKeyRows {
    fn from(key_rows: KeyRows) -> Self {
        match key_rows {
            KeyRows::PerRow(rows) => Self { rows: rows.to_vec(), stride: None },
            KeyRows::PerPosition { rows, stride } => Self { rows: rows.to_vec(), stride: Some(stride) },
        }
    }
}

impl OwnedKeyRows {
    /// The key row query row `row` reads ([`KeyRows::PerRow`]; its first position's row
    /// otherwise).
    fn row(&self, row: usize) -> usize {
        self.rows[row * self.stride.unwrap_or(1)] as usize
    }

    /// The key row of each of the `k_len` positions query row `row` reads
    /// ([`KeyRows::PerPosition`] only).
    fn positions(&self, row: usize, k_len: usize) -> Option<&[u32]> {
        self.stride.map(|stride| &self.rows[row * stride..][..k_len])
    }
}

#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    heads: usize,
    q_len: usize,
    k_len: usize,
    head_dim: usize,
}

impl Dims {
    /// One head's queries (or its query gradients) as a matrix.
    fn query_matrix(&self) -> Strided {
        Strided::rows(self.q_len, self.head_dim, self.head_dim)
    }

    /// One head's keys or values (or their gradients) as a matrix.
    fn key_matrix(&self) -> Strided {
        Strided::rows(self.k_len, self.head_dim, self.head_dim)
    }

    /// One head's scores or weights.
    fn score_matrix(&self) -> Strided {
        Strided::rows(self.q_len, self.k_len, self.k_len)
    }

    /// One head's slice of the merged `(q_len, heads, head_dim)` output of a sentence.
    fn merged_matrix(&self) -> Strided {
        Strided::rows(self.q_len, self.head_dim, self.heads * self.head_dim)
    }
}

struct Attention {
    dims: Dims,
    scale: f64,
    /// Broadcast to `(b, heads, q_len, k_len)`; constant.
    bias: Option<Tensor>,
    dropout: Option<DropoutMask>,
    /// The key rows each query row reads; `None`: its own.
    key_rows: Option<OwnedKeyRows>,
}

/// A bias tensor's elements and strides, read in place (broadcast dimensions have stride 0).
struct BiasView<'a, T> {
    data: &'a [T],
    offset: usize,
    strides: [usize; 4],
}

impl<T: Real> BiasView<'_, T> {
    fn at(&self, sentence: usize, head: usize, query: usize, key: usize) -> T {
        let [s0, s1, s2, s3] = self.strides;
        self.data[self.offset + sentence * s0 + head * s1 + query * s2 + key * s3]
    }
}

/// `xs` itself when each `(row, head)` block of its `(rows, heads, len, width)` elements is
/// contiguous, else a contiguous copy.
fn with_contiguous_blocks(xs: &Tensor) -> Result<Tensor> {
    if has_contiguous_blocks(xs.layout()) {
        Ok(xs.clone())
    } else {
        xs.contiguous()
    }
}

/// Whether each `(row, head)` block of a `(rows, heads, len, width)` layout is contiguous.
fn has_contiguous_blocks(layout: &Layout) -> bool {
    match (layout.dims(), layout.stride()) {
        (&[_, _, len, width], &[_, _, len_stride, width_stride]) => {
            (width <= 1 || width_stride == 1) && (len <= 1 || len_stride == width)
        }
        _ => false,
    }
}

/// Keys or values read block by block: the `k_len × head_dim` elements of each `(row, head)`
/// are contiguous, the blocks may lie anywhere (a decoding cache's buffers keep room for more
/// positions after each).
#[derive(Clone, Copy)]
struct Blocks<'a, T> {
    data: &'a [T],
    row_stride: usize,
    head_stride: usize,
    width: usize,
    size: usize,
}

impl<'a, T: WithDType> Blocks<'a, T> {
    /// The blocks of a tensor's storage read through its layout, which must have contiguous
    /// blocks ([`has_contiguous_blocks`]).
    fn in_place(storage: &'a CpuStorage, layout: &Layout) -> Result<Self> {
        let (dims, strides) = (layout.dims(), layout.stride());
        if !has_contiguous_blocks(layout) {
            bail!("attention: keys or values {dims:?} with strides {strides:?} are not contiguous per head")
        }
        let data = &storage.as_slice::<T>()?[layout.start_offset()..];
        let blocks = Self {
            data,
            row_stride: strides[0],
            head_stride: strides[1],
            width: dims[3],
            size: dims[2] * dims[3],
        };
        let last = (dims[0].saturating_sub(1) * blocks.row_stride
            + dims[1].saturating_sub(1) * blocks.head_stride)
            + blocks.size;
        if last > data.len() {
            bail!("attention: keys or values {dims:?} with strides {strides:?} overrun their storage")
        }
        Ok(blocks)
    }

    /// Head `head` of row `row`.
    fn block(&self, row: usize, head: usize) -> &'a [T] {
        &self.data[row * self.row_stride + head * self.head_stride..][..self.size]
    }

    /// Position `position` of head `head` of row `row`.
    fn position(&self, row: usize, head: usize, position: usize) -> &'a [T] {
        &self.data[row * self.row_stride + head * self.head_stride + position * self.width..][..self.width]
    }
}

/// Everything one head's computation reads, besides its queries, keys and values.
struct HeadContext<'a, T> {
    dims: Dims,
    scale: T,
    bias: Option<&'a BiasView<'a, T>>,
    dropout: Option<&'a DropoutMask>,
    key_rows: Option<&'a OwnedKeyRows>,
}

impl<'k, T: Real> HeadContext<'_, T> {
    /// The row of the keys and values that query row `sentence` reads, unless it reads them
    /// position by position ([`OwnedKeyRows::positions`]).
    fn key_row(&self, sentence: usize) -> usize {
        self.key_rows.map_or(sentence, |rows| rows.row(sentence))
    }

    /// `weights = softmax(scale · q kᵀ + bias)` for head `head` of sentence `sentence`, from
    /// its block of keys `k`.
    fn weights(&self, weights: &mut [T], q: &[T], k: &[T], sentence: usize, head: usize) {
        let d = self.dims;
        if d.q_len == 1 {
            self.single_query_weights(weights, q, k.chunks_exact(d.head_dim), sentence, head);
        } else {
            matmul(
                weights,
                d.score_matrix(),
                q,
                d.query_matrix(),
                k,
                d.key_matrix().t(),
                self.scale,
                false,
                Threads::One,
            );
            self.normalize(weights, sentence, head);
        }
    }

    /// [`weights`](Self::weights) of a single query, its keys given one by one (wherever
    /// they lie).
    fn single_query_weights(
        &self,
        weights: &mut [T],
        q: &[T],
        keys: impl Iterator<Item = &'k [T]>,
        sentence: usize,
        head: usize,
    ) {
        weights.iter_mut().zip(keys).for_each(|(w, key)| *w = self.scale * dot(q, key));
        self.normalize(weights, sentence, head);
    }

    /// Adds the bias to the scores `weights` and takes their softmax, row by row.
    fn normalize(&self, weights: &mut [T], sentence: usize, head: usize) {
        let d = self.dims;
        for (i, row) in weights.chunks_exact_mut(d.k_len).enumerate() {
            if let Some(bias) = self.bias {
                row.iter_mut().enumerate().for_each(|(j, s)| *s += bias.at(sentence, head, i, j));
            }
            let max = row.iter().fold(T::neg_infinity(), |m, &x| num_traits::Float::max(m, x));
            let mut sum = T::zero();
            for s in row.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let inv = sum.recip();
            row.iter_mut().for_each(|s| *s *= inv);
        }
    }

    /// `dropped = weights ⊙ mask` for the head whose weights start at element `first` of the
    /// `(b, heads, q_len, k_len)` mask; a copy of `weights` without dropout.
    fn drop(&self, dropped: &mut [T], weights: &[T], first: usize) {
        match self.dropout {
            Some(mask) => dropped
                .iter_mut()
                .zip(weights)
                .enumerate()
                .for_each(|(i, (d, &w))| *d = w * mask.factor(first + i)),
            None => dropped.copy_from_slice(weights),
        }
    }
}

fn forward<'a, T: Real>(q: &[T], k: Blocks<'a, T>, v: Blocks<'a, T>, ctx: &HeadContext<T>) -> Vec<T> {
    let d = ctx.dims;
    let (q_size, s_size) = (d.q_len * d.head_dim, d.q_len * d.k_len);
    let mut out = vec![T::zero(); d.b * d.q_len * d.heads * d.head_dim];
    out.par_chunks_mut(d.q_len * d.heads * d.head_dim).enumerate().for_each(|(sentence, out)| {
        let (mut weights, mut dropped) = (vec![T::zero(); s_size], vec![T::zero(); s_size]);
        // Keys read position by position (a reordered decoding cache, one query), else by blocks.
        let positions = ctx.key_rows.and_then(|key_rows| key_rows.positions(sentence, d.k_len));
        let row = ctx.key_row(sentence);
        for head in 0..d.heads {
            let index = sentence * d.heads + head;
            let q = &q[index * q_size..][..q_size];
            let out = &mut out[head * d.head_dim..];
            if let Some(rows) = positions {
                let at = |blocks: Blocks<'a, T>| {
                    rows.iter().enumerate().map(move |(p, &row)| blocks.position(row as usize, head, p))
                };
                ctx.single_query_weights(&mut weights, q, at(k), sentence, head);
                ctx.drop(&mut dropped, &weights, index * s_size);
                weighted_sum(&mut out[..d.head_dim], &dropped, at(v));
            } else if d.q_len == 1 {
                let (k, v) = (k.block(row, head), v.block(row, head));
                ctx.single_query_weights(&mut weights, q, k.chunks_exact(d.head_dim), sentence, head);
                ctx.drop(&mut dropped, &weights, index * s_size);
                weighted_sum(&mut out[..d.head_dim], &dropped, v.chunks_exact(d.head_dim));
            } else {
                let (k, v) = (k.block(row, head), v.block(row, head));
                ctx.weights(&mut weights, q, k, sentence, head);
                ctx.drop(&mut dropped, &weights, index * s_size);
                matmul(
                    out,
                    d.merged_matrix(),
                    &dropped,
                    d.score_matrix(),
                    v,
                    d.key_matrix(),
                    T::one(),
                    false,
                    Threads::One,
                );
            }
        }
    });
    out
}

/// Lanes of the single-query loops ([`dot`], [`weighted_sum`]): independent sums the
/// compiler keeps in vector registers.
const LANES: usize = 8;

/// `a · b`, summed in [`LANES`] lanes, then the lanes and the tail.
///
/// A decoding step attends from one query per head: a `(1 × head_dim) · (head_dim × k_len)`
/// product, for which a matrix product's set-up (packing, dispatch) cost more than the
/// arithmetic. This loop, and [`weighted_sum`], took the step's attention from 19% of beam
/// search to a few percent (see the issue 21 note of 2026-12-07).
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail =
        a_chunks.remainder().iter().zip(b_chunks.remainder()).fold(T::zero(), |acc, (&x, &y)| acc + x * y);
    let mut sums = [T::zero(); LANES];
    for (x, y) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            sums[lane] += x[lane] * y[lane];
        }
    }
    sums.iter().fold(tail, |acc, &sum| acc + sum)
}

/// `out = Σⱼ weights[j] · rows[j]`, with `rows` the `weights.len()` rows of `out.len()`
/// elements: one query's context from its weights and the values.
fn weighted_sum<'a, T: Real>(out: &mut [T], weights: &[T], rows: impl Iterator<Item = &'a [T]>) {
    out.fill(T::zero());
    for (&weight, row) in weights.iter().zip(rows) {
        out.iter_mut().zip(row).for_each(|(o, &x)| *o += weight * x);
    }
}

/// Gradients of queries, keys and values from the gradient `grad` of the merged output. With
/// `P` the weights, `P'` the dropped weights and `M` the mask: `dV = P'ᵀ dO`,
/// `dP = (dO Vᵀ) ⊙ M`, `dS = P ⊙ (dP − rowsum(dP ⊙ P))`, `dQ = scale · dS K`,
/// `dK = scale · dSᵀ Q`.
fn backward<T: Real>(q: &[T], k: &[T], v: &[T], grad: &[T], ctx: &HeadContext<T>) -> [Vec<T>; 3] {
    let d = ctx.dims;
    let (q_size, k_size, s_size) = (d.q_len * d.head_dim, d.k_len * d.head_dim, d.q_len * d.k_len);
    let (mut dq, mut dk, mut dv) =
        (vec![T::zero(); q.len()], vec![T::zero(); k.len()], vec![T::zero(); v.len()]);
    let per_sentence = (d.heads * q_size, d.heads * k_size);
    dq.par_chunks_mut(per_sentence.0)
        .zip(dk.par_chunks_mut(per_sentence.1).zip(dv.par_chunks_mut(per_sentence.1)))
        .enumerate()
        .for_each(|(sentence, (dq, (dk, dv)))| {
            let mut weights = vec![T::zero(); s_size];
            let mut dropped = vec![T::zero(); s_size];
            let mut dscores = vec![T::zero(); s_size];
            let grad = &grad[sentence * d.q_len * d.heads * d.head_dim..];
            for head in 0..d.heads {
                let index = sentence * d.heads + head;
                let (q_h, k_h, v_h) = (
                    &q[index * q_size..][..q_size],
                    &k[index * k_size..][..k_size],
                    &v[index * k_size..][..k_size],
                );
                let grad = &grad[head * d.head_dim..];
                ctx.weights(&mut weights, q_h, k_h, sentence, head);
                ctx.drop(&mut dropped, &weights, index * s_size);
                let dv = &mut dv[head * k_size..][..k_size];
                matmul(
                    dv,
                    d.key_matrix(),
                    &dropped,
                    d.score_matrix().t(),
                    grad,
                    d.merged_matrix(),
                    T::one(),
                    false,
                    Threads::One,
                );
                matmul(
                    &mut dscores,
                    d.score_matrix(),
                    grad,
                    d.merged_matrix(),
                    v_h,
                    d.key_matrix().t(),
                    T::one(),
                    false,
                    Threads::One,
                );
                for (i, (ds, p)) in
                    dscores.chunks_exact_mut(d.k_len).zip(weights.chunks_exact(d.k_len)).enumerate()
                {
                    if let Some(mask) = ctx.dropout {
                        let first = index * s_size + i * d.k_len;
                        ds.iter_mut().enumerate().for_each(|(j, g)| *g *= mask.factor(first + j));
                    }
                    let dot = ds.iter().zip(p).fold(T::zero(), |acc, (&g, &p)| acc + g * p);
                    ds.iter_mut().zip(p).for_each(|(g, &p)| *g = p * (*g - dot));
                }
                let dq = &mut dq[head * q_size..][..q_size];
                matmul(
                    dq,
                    d.query_matrix(),
                    &dscores,
                    d.score_matrix(),
                    k_h,
                    d.key_matrix(),
                    ctx.scale,
                    false,
                    Threads::One,
                );
                let dk = &mut dk[head * k_size..][..k_size];
                matmul(
                    dk,
                    d.key_matrix(),
                    &dscores,
                    d.score_matrix().t(),
                    q_h,
                    d.query_matrix(),
                    ctx.scale,
                    false,
                    Threads::One,
                );
            }
        });
    [dq, dk, dv]
}

impl Attention {
    /// Runs `f` with this op's bias viewed in place and the context of its heads.
    fn with_context<T: Real, R>(&self, f: impl FnOnce(&HeadContext<T>) -> R) -> Result<R> {
        let guard = self.bias.as_ref().map(|bias| bias.storage_and_layout());
        let view = match &guard {
            Some((storage, layout)) => {
                let Storage::Cpu(storage) = &**storage else { bail!("attention: bias is not on the CPU") };
                let strides = layout.stride();
                Some(BiasView {
                    data: storage.as_slice::<T>()?,
                    offset: layout.start_offset(),
                    strides: [strides[0], strides[1], strides[2], strides[3]],
                })
            }
            None => None,
        };
        let ctx = HeadContext {
            dims: self.dims,
            scale: T::from_f64(self.scale),
            bias: view.as_ref(),
            dropout: self.dropout.as_ref(),
            key_rows: self.key_rows.as_ref(),
        };
        Ok(f(&ctx))
    }

    fn backward_tensors<T: Real>(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        grad: &Tensor,
    ) -> Result<[Tensor; 3]> {
        let [dq, dk, dv] = with_elements::<T, _>(q, |q| {
            with_elements::<T, _>(k, |k| {
                with_elements::<T, _>(v, |v| {
                    with_elements::<T, _>(grad, |grad| self.with_context(|ctx| backward(q, k, v, grad, ctx)))
                })
            })
        })?????;
        Ok([
            Tensor::from_vec(dq, q.shape(), q.device())?,
            Tensor::from_vec(dk, k.shape(), k.device())?,
            Tensor::from_vec(dv, v.shape(), v.device())?,
        ])
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "locus-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        q_l: &Layout,
        k: &CpuStorage,
        k_l: &Layout,
        v: &CpuStorage,
        v_l: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match q {
            CpuStorage::F32(_) => {
                let (q, k, v) = (contiguous(q, q_l)?, Blocks::in_place(k, k_l)?, Blocks::in_place(v, v_l)?);
                CpuStorage::F32(self.with_context(|ctx| forward::<f32>(q, k, v, ctx))?)
            }
            CpuStorage::F64(_) => {
                let (q, k, v) = (contiguous(q, q_l)?, Blocks::in_place(k, k_l)?, Blocks::in_place(v, v_l)?);
                CpuStorage::F64(self.with_context(|ctx| forward::<f64>(q, k, v, ctx))?)
            }
            other => bail!("attention: unsupported dtype {:?}", other.dtype()),
        };
        let Dims { b, heads, q_len, head_dim, .. } = self.dims;
        Ok((out, Shape::from((b, q_len, heads * head_dim))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        if self.key_rows.is_some() {
            bail!("attention: no backward pass through shared key rows (incremental decoding is inference only)")
        }
        let [dq, dk, dv] = match q.dtype() {
            DType::F32 => self.backward_tensors::<f32>(q, k, v, grad)?,
            DType::F64 => self.backward_tensors::<f64>(q, k, v, grad)?,
            other => bail!("attention: unsupported dtype {other:?}"),
        };
        Ok((Some(dq), Some(dk), Some(dv)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::{causal_bias, padding_bias};
    use crate::testing::{check_gradients, max_diff, random};
    use candle_core::{Device, IndexOp, Var};

    /// Padding (sentence 1 has 3 real keys of 5) plus a causal bias, as in a decoder.
    fn bias() -> Tensor {
        let tokens = Tensor::new(&[[4u32, 5, 6, 7, 8], [4, 5, 6, 0, 0]], &Device::Cpu).unwrap();
        let padding = padding_bias(&tokens, 0, DType::F64).unwrap();
        padding.broadcast_add(&causal_bias(5, 0, DType::F64, &Device::Cpu).unwrap()).unwrap()
    }

    fn mask(n: usize) -> DropoutMask {
        DropoutMask::new((0..n).map(|i| i % 4 != 2).collect(), 4.0 / 3.0)
    }

    /// The composed reference, written out: scores, bias, softmax, dropout, values, heads
    /// merged.
    fn reference(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        scale: f64,
        bias: &Tensor,
        mask: &DropoutMask,
    ) -> Tensor {
        let scores =
            q.matmul(&k.t().unwrap()).unwrap().affine(scale, 0.0).unwrap().broadcast_add(bias).unwrap();
        let weights = candle_nn::ops::softmax(&scores, candle_core::D::Minus1).unwrap();
        let factors: Vec<f64> = (0..mask.len()).map(|i| mask.factor(i)).collect();
        let weights = (weights * Tensor::from_vec(factors, scores.shape(), &Device::Cpu).unwrap()).unwrap();
        let (b, heads, q_len, head_dim) = q.dims4().unwrap();
        weights.matmul(v).unwrap().transpose(1, 2).unwrap().reshape((b, q_len, heads * head_dim)).unwrap()
    }

    #[test]
    fn matches_composed_attention_with_bias_and_dropout() {
        let (q, k, v) = (
            random((2, 3, 5, 4), 1).unwrap(),
            random((2, 3, 5, 4), 2).unwrap(),
            random((2, 3, 5, 4), 3).unwrap(),
        );
        let mask = mask(2 * 3 * 5 * 5);
        let got = attention(&q, &k, &v, 0.5, Some(&bias()), Some(&mask), None).unwrap();
        assert_eq!(got.dims(), [2, 5, 12]);
        assert!(max_diff(&got, &reference(&q, &k, &v, 0.5, &bias(), &mask)).unwrap() < 1e-12);
    }

    /// Cross-attention shapes: 2 queries over 5 keys, no bias, no dropout.
    #[test]
    fn matches_composed_attention_across_lengths() {
        let (q, k, v) = (
            random((2, 3, 2, 4), 4).unwrap(),
            random((2, 3, 5, 4), 5).unwrap(),
            random((2, 3, 5, 4), 6).unwrap(),
        );
        let got = attention(&q, &k, &v, 0.5, None, None, None).unwrap();
        let zero = Tensor::zeros((1, 1, 1, 5), DType::F64, &Device::Cpu).unwrap();
        let keep_all = DropoutMask::new(vec![true; 2 * 3 * 2 * 5], 1.0);
        assert!(max_diff(&got, &reference(&q, &k, &v, 0.5, &zero, &keep_all)).unwrap() < 1e-12);
    }

    /// A decoding step: one query per head, which takes the dot-product loops instead of the
    /// matrix products. A head width of 12 has a full lane chunk and a tail.
    #[test]
    fn a_single_query_matches_composed_attention() {
        let (q, k, v) = (
            random((2, 3, 1, 12), 11).unwrap(),
            random((2, 3, 5, 12), 12).unwrap(),
            random((2, 3, 5, 12), 13).unwrap(),
        );
        let tokens = Tensor::new(&[[4u32, 5, 6, 7, 8], [4, 5, 0, 0, 0]], &Device::Cpu).unwrap();
        let padding = padding_bias(&tokens, 0, DType::F64).unwrap();
        let mask = mask(2 * 3 * 5);
        let got = attention(&q, &k, &v, 0.3, Some(&padding), Some(&mask), None).unwrap();
        assert_eq!(got.dims(), [2, 1, 36]);
        assert!(max_diff(&got, &reference(&q, &k, &v, 0.3, &padding, &mask)).unwrap() < 1e-12);
    }

    /// Query rows reading shared key rows (`key_rows`) get what the gathered keys give, one
    /// query (a decoding step) or several; a row index out of range is an error.
    #[test]
    fn shared_key_rows_match_gathered_keys() {
        let key_rows = [1u32, 0, 1];
        let index = Tensor::new(&key_rows, &Device::Cpu).unwrap();
        let (k, v) = (random((2, 3, 5, 12), 15).unwrap(), random((2, 3, 5, 12), 16).unwrap());
        let (gathered_k, gathered_v) =
            (k.index_select(&index, 0).unwrap(), v.index_select(&index, 0).unwrap());
        let tokens =
            Tensor::new(&[[4u32, 5, 6, 7, 8], [4, 5, 6, 0, 0], [4, 5, 0, 0, 0]], &Device::Cpu).unwrap();
        let padding = padding_bias(&tokens, 0, DType::F64).unwrap();
        for q_len in [1, 2] {
            let q = random((3, 3, q_len, 12), 14).unwrap();
            let got =
                attention(&q, &k, &v, 0.3, Some(&padding), None, Some(KeyRows::PerRow(&key_rows))).unwrap();
            let want = attention(&q, &gathered_k, &gathered_v, 0.3, Some(&padding), None, None).unwrap();
            assert!(max_diff(&got, &want).unwrap() < 1e-12, "q_len {q_len}");
        }
        let q = random((3, 3, 1, 12), 14).unwrap();
        assert!(attention(&q, &k, &v, 0.3, None, None, Some(KeyRows::PerRow(&[0, 2, 1]))).is_err());
        assert!(attention(&q, &k, &v, 0.3, None, None, None).is_err());
    }

    /// Query rows reading each position from its own key row (`KeyRows::PerPosition`) get
    /// what the keys gathered position by position give, in place (one query) or gathered
    /// first (two); a row out of range, or a table too short, is an error.
    #[test]
    fn per_position_key_rows_match_keys_gathered_by_position() {
        let (k, v) = (random((3, 2, 4, 12), 31).unwrap(), random((3, 2, 4, 12), 32).unwrap());
        // Three query rows, a stride of 6 positions of which 4 are read.
        let table = [2u32, 0, 1, 1, 9, 9, 0, 0, 0, 0, 9, 9, 1, 2, 2, 0, 9, 9];
        let gathered = |xs: &Tensor| {
            let rows: Vec<Tensor> = table
                .chunks_exact(6)
                .map(|row| {
                    let positions: Vec<Tensor> =
                        (0..4).map(|p| xs.i((row[p] as usize, .., p..p + 1, ..)).unwrap()).collect();
                    Tensor::cat(&positions, 1).unwrap()
                })
                .collect();
            Tensor::stack(&rows, 0).unwrap()
        };
        let key_rows = KeyRows::PerPosition { rows: &table, stride: 6 };
        assert_eq!(max_diff(&key_rows.gather(&k).unwrap(), &gathered(&k)).unwrap(), 0.0);
        let tokens = Tensor::new(&[[4u32, 5, 6, 7], [4, 5, 6, 0], [4, 5, 0, 0]], &Device::Cpu).unwrap();
        let padding = padding_bias(&tokens, 0, DType::F64).unwrap();
        for q_len in [1, 2] {
            let q = random((3, 2, q_len, 12), 33).unwrap();
            let got = attention(&q, &k, &v, 0.3, Some(&padding), None, Some(key_rows)).unwrap();
            let want = attention(&q, &gathered(&k), &gathered(&v), 0.3, Some(&padding), None, None).unwrap();
            assert!(max_diff(&got, &want).unwrap() < 1e-12, "q_len {q_len}");
        }
        let q = random((3, 2, 1, 12), 33).unwrap();
        let mut out_of_range = table;
        out_of_range[3] = 3;
        let refused = |rows: &[u32]| {
            attention(&q, &k, &v, 0.3, None, None, Some(KeyRows::PerPosition { rows, stride: 6 })).is_err()
        };
        assert!(refused(&out_of_range) && refused(&table[..12]));
    }

    /// Keys and values read in place from buffers with room for more positions (a decoding
    /// cache's) give exactly what their contiguous copies give; keys whose heads are not
    /// contiguous (transposed) are copied first and give the same.
    #[test]
    fn keys_read_in_place_from_larger_buffers_match_contiguous_keys() {
        let (k_buffer, v_buffer) = (random((3, 3, 9, 12), 21).unwrap(), random((3, 3, 9, 12), 22).unwrap());
        let padding = padding_bias(
            &Tensor::new(&[[4u32, 5, 6, 7, 8], [4, 5, 6, 0, 0]], &Device::Cpu).unwrap(),
            0,
            DType::F64,
        )
        .unwrap();
        for (first_row, first_position) in [(0, 0), (1, 3)] {
            let view = |buffer: &Tensor| {
                buffer.narrow(0, first_row, 2).unwrap().narrow(2, first_position, 5).unwrap()
            };
            let (k, v) = (view(&k_buffer), view(&v_buffer));
            assert!(!k.is_contiguous() && has_contiguous_blocks(k.layout()));
            for q_len in [1, 2] {
                let q = random((2, 3, q_len, 12), 23).unwrap();
                let got = attention(&q, &k, &v, 0.3, Some(&padding), None, None).unwrap();
                let want = attention(
                    &q,
                    &k.contiguous().unwrap(),
                    &v.contiguous().unwrap(),
                    0.3,
                    Some(&padding),
                    None,
                    None,
                )
                .unwrap();
                assert_eq!(
                    max_diff(&got, &want).unwrap(),
                    0.0,
                    "rows from {first_row}, positions from {first_position}, q_len {q_len}"
                );
            }
        }
        let q = random((2, 3, 1, 12), 24).unwrap();
        let k = random((2, 3, 12, 5), 25).unwrap().transpose(2, 3).unwrap();
        assert!(!has_contiguous_blocks(k.layout()));
        let v = random((2, 3, 5, 12), 26).unwrap();
        let got = attention(&q, &k, &v, 0.3, None, None, None).unwrap();
        let want = attention(&q, &k.contiguous().unwrap(), &v, 0.3, None, None, None).unwrap();
        assert_eq!(max_diff(&got, &want).unwrap(), 0.0);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let q = Var::from_tensor(&random((2, 3, 5, 4), 7).unwrap()).unwrap();
        let k = Var::from_tensor(&random((2, 3, 5, 4), 8).unwrap()).unwrap();
        let v = Var::from_tensor(&random((2, 3, 5, 4), 9).unwrap()).unwrap();
        let (bias, mask) = (bias(), mask(2 * 3 * 5 * 5));
        let probe = random((2, 5, 12), 10).unwrap();
        check_gradients(&[&q, &k, &v], || {
            (attention(q.as_tensor(), k.as_tensor(), v.as_tensor(), 0.7, Some(&bias), Some(&mask), None)?
                * &probe)?
                .sum_all()
        })
        .unwrap();
    }

    /// A learned bias needs its gradient: the composed path gives it.
    #[test]
    fn a_learned_bias_gets_its_gradient() {
        let (q, k, v) = (
            random((1, 2, 3, 4), 1).unwrap(),
            random((1, 2, 3, 4), 2).unwrap(),
            random((1, 2, 3, 4), 3).unwrap(),
        );
        let bias = Var::from_tensor(&random((1, 2, 3, 3), 4).unwrap()).unwrap();
        let probe = random((1, 3, 8), 5).unwrap();
        check_gradients(&[&bias], || {
            (attention(&q, &k, &v, 0.5, Some(bias.as_tensor()), None, None)? * &probe)?.sum_all()
        })
        .unwrap();
    }
}
