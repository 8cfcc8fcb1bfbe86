//! Linear layers in 8-bit integers, for decoding on the CPU: each weight row (output channel)
//! is quantized once, symmetrically, to `round(w / s)` in `[-127, 127]` with `s = max|w| / 127`;
//! each input row is quantized the same way at every call; the products are exact sums in 32-bit
//! integers, scaled back to f32 with the two scales, plus the bias.
//!
//! The product is written here rather than taken from candle's quantized matmuls: those
//! (ggml's block formats) multiply one input row at a time, and at the 100–400 rows of a batched
//! decoding step they were slower than the f32 product (Q8_0, 100 × 1,024 → 256 on one thread:
//! 616 µs against 346 µs for f32, 2026-12-07). This kernel computes a tile of [`ROWS`] rows by
//! [`PANEL`] output channels in registers, with AVX-512 VNNI's `vpdpbusd` (64 multiply-adds
//! of an unsigned by a signed byte per instruction), so every weight it loads serves [`ROWS`]
//! rows. `vpdpbusd` takes unsigned activations: they are stored offset by 128, and
//! `128 · Σ_i q_ji` is subtracted from each channel's sum. CPUs without AVX-512 VNNI run the
//! same integer arithmetic in portable code, with bit-identical results.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::rows::contiguous;

/// Output channels per panel of packed weights: four 512-bit vectors of 16 channels.
const PANEL: usize = 64;
/// Input rows per register tile.
const ROWS: usize = 4;
/// Inputs one 32-bit lane of `vpdpbusd` sums.
const GROUP: usize = 4;
/// The largest magnitude of a quantized value.
const LEVELS: f32 = 127.0;
/// The offset that makes a quantized activation an unsigned byte.
const OFFSET: i32 = 128;

/// A linear layer `y = x Wᵀ + b` with its weight quantized to 8 bits per output channel and
/// packed for the product.
#[derive(Debug, Clone)]
pub struct Int8Linear {
    in_dim: usize,
    out_dim: usize,
    /// `in_dim` rounded up to a multiple of [`GROUP`]; the extra inputs weigh 0.
    depth: usize,
    /// Panels of [`PANEL`] channels (the last padded with zero channels), each `depth / GROUP`
    /// groups of, for every channel, its [`GROUP`] consecutive quantized weights.
    packed: Vec<i8>,
    /// Per channel, padded: the weight scale `s_j`.
    scales: Vec<f32>,
    /// Per channel, padded: `128 · Σ_i q_ji`, the offset of the activations times the weights.
    offsets: Vec<i32>,
    /// Per channel, padded.
    bias: Vec<f32>,
}

impl Int8Linear {
    /// Quantizes `weight` (`(out, in)`, any layout, f32 or another float dtype) and keeps
    /// `bias` (`(out,)`, zero when `None`) in f32.
    ///
    /// # Errors
    /// A weight or bias that is not on the CPU (int8 products run on the CPU only), or of the
    /// wrong rank or shape.
    pub fn quantize(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        if !weight.device().is_cpu() {
            bail!("int8 linear layers run on the CPU only, the weight is on {:?}", weight.device())
        }
        let rows = weight.to_dtype(DType::F32)?.to_vec2::<f32>()?;
        let (out_dim, in_dim) = weight.dims2()?;
        let bias = match bias {
            Some(bias) => bias.to_dtype(DType::F32)?.to_vec1::<f32>()?,
            None => vec![0.0; out_dim],
        };
        if bias.len() != out_dim {
            bail!("int8 linear: a bias of {} for {out_dim} output channels", bias.len())
        }
        let depth = in_dim.next_multiple_of(GROUP);
        let channels = out_dim.next_multiple_of(PANEL);
        let mut packed = vec![0i8; channels * depth];
        let mut scales = vec![0.0; channels];
        let mut offsets = vec![0; channels];
        let mut levels = vec![0; in_dim];
        for (j, row) in rows.iter().enumerate() {
            scales[j] = quantize_row(row, &mut levels);
            let (panel, column) = (j / PANEL, j % PANEL);
            for (i, &q) in levels.iter().enumerate() {
                let (group, byte) = (i / GROUP, i % GROUP);
                packed[panel * PANEL * depth + (group * PANEL + column) * GROUP + byte] = q;
            }
            offsets[j] = OFFSET * levels.iter().map(|&q| i32::from(q)).sum::<i32>();
        }
        let mut padded_bias = vec![0.0; channels];
        padded_bias[..out_dim].copy_from_slice(&bias);
        Ok(Self { in_dim, out_dim, depth, packed, scales, offsets, bias: padded_bias })
    }

    /// Width of the output.
    pub fn out_dim(&self) -> usize {
        self.out_dim
    }

    /// `xs · Wᵀ + b`, then ReLU when `relu`, over the last dimension of `xs` (f32, on the CPU).
    ///
    /// # Shapes
    /// `xs`: `(..., in)`; returns `(..., out)`.
    pub fn forward(&self, xs: &Tensor, relu: bool) -> Result<Tensor> {
        xs.apply_op1_no_bwd(&Int8Product { layer: self, relu })
    }

    /// The products of `rows` input rows of `in_dim` elements each, `rows × out_dim`.
    fn product(&self, xs: &[f32], rows: usize, relu: bool) -> Vec<f32> {
        if rows == 0 || self.out_dim == 0 {
            return Vec::new();
        }
        let tiles = rows.div_ceil(ROWS);
        let kernel = Kernel::best();
        let activations = QuantizedRows::new(xs, tiles * ROWS, self.in_dim, self.depth, kernel);
        let mut ys = vec![0.0; rows * self.out_dim];
        // Tiles split between the threads; one task when the product is too small to share.
        let work = rows * self.depth * self.out_dim;
        let tasks = if work < 1 << 20 { 1 } else { rayon::current_num_threads().min(tiles) };
        let tiles_per_task = tiles.div_ceil(tasks);
        let compute = |(task, ys): (usize, &mut [f32])| {
            self.tiles(kernel, &activations, task * tiles_per_task, relu, ys);
        };
        if tasks == 1 {
            // On the calling thread: no hand-off to the pool for a product this small.
            compute((0, &mut ys));
        } else {
            ys.par_chunks_mut(tiles_per_task * ROWS * self.out_dim).enumerate().for_each(compute);
        }
        ys
    }

    /// The output rows `ys` of the tiles from `first_tile` on, with `kernel`.
    fn tiles(
        &self,
        kernel: Kernel,
        activations: &QuantizedRows,
        first_tile: usize,
        relu: bool,
        ys: &mut [f32],
    ) {
        match kernel {
            Kernel::Portable => self.tiles_with(kernel, activations, first_tile, relu, ys),
            // SAFETY: `best` chose this kernel only where the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe { self.tiles_with_avx512(activations, first_tile, relu, ys) },
        }
    }

    /// [`Self::tiles_with`] compiled with AVX-512, so that the scaling of the sums is too.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tiles_with_avx512(
        &self,
        activations: &QuantizedRows,
        first_tile: usize,
        relu: bool,
        ys: &mut [f32],
    ) {
        self.tiles_with(Kernel::Vnni, activations, first_tile, relu, ys)
    }

    /// Each panel of weights against each tile of rows: the panel stays in cache while the
    /// tiles pass, and the tiles' quantized rows are small enough to stay too.
    #[inline(always)]
    fn tiles_with(
        &self,
        kernel: Kernel,
        activations: &QuantizedRows,
        first_tile: usize,
        relu: bool,
        ys: &mut [f32],
    ) {
        for panel in 0..self.out_dim.div_ceil(PANEL) {
            let weights = &self.packed[panel * PANEL * self.depth..(panel + 1) * PANEL * self.depth];
            for (tile, ys) in ys.chunks_mut(ROWS * self.out_dim).enumerate() {
                let first_row = (first_tile + tile) * ROWS;
                let sums = kernel.tile(weights, activations.tile(first_row), self.depth);
                self.write_tile(&sums, panel, first_row, &activations.scales, relu, ys);
            }
        }
    }

    /// Scales one tile's integer sums back to f32, adds the bias and writes its valid rows and
    /// channels into `ys`, the rows of the tile's output.
    #[inline(always)]
    fn write_tile(
        &self,
        sums: &[[i32; PANEL]; ROWS],
        panel: usize,
        first_row: usize,
        row_scales: &[f32],
        relu: bool,
        ys: &mut [f32],
    ) {
        let channels = panel * PANEL..(panel * PANEL + PANEL).min(self.out_dim);
        let (offsets, scales, bias) =
            (&self.offsets[channels.clone()], &self.scales[channels.clone()], &self.bias[channels.clone()]);
        for ((ys, sums), &row_scale) in ys.chunks_mut(self.out_dim).zip(sums).zip(&row_scales[first_row..]) {
            let ys = &mut ys[channels.clone()];
            for ((((y, &sum), &offset), &scale), &bias) in
                ys.iter_mut().zip(sums).zip(offsets).zip(scales).zip(bias)
            {
                *y = (sum - offset) as f32 * (row_scale * scale) + bias;
            }
            if relu {
                ys.iter_mut().for_each(|y| *y = y.max(0.0));
            }
        }
    }
}

/// The scale of `row`, `s = max|x| / 127`, and the factor that quantizes it, `1 / s` (0 for a
/// row of zeros, whose values all quantize to 0). A row holding a NaN gets a NaN scale, so
/// that the output is NaN too.
#[inline(always)]
fn row_scale(row: &[f32]) -> (f32, f32) {
    // The largest magnitude as the largest of the values' bits without the sign: for floats
    // that are not NaN, these order as the magnitudes do, and every NaN lies above infinity.
    // An integer maximum vectorizes; `f32::max`, which must order NaNs, did not.
    const INFINITY: u32 = 0x7f80_0000;
    let bits = row.iter().fold(0u32, |max, x| max.max(x.to_bits() & 0x7fff_ffff));
    if bits > INFINITY {
        return (f32::NAN, 0.0);
    }
    let max = f32::from_bits(bits);
    if max == 0.0 {
        (0.0, 0.0)
    } else {
        (max / LEVELS, LEVELS / max)
    }
}

/// `x` rounded to an integer, ties to even, for `|x|` below 2^22: adding and subtracting
/// 1.5 · 2^23 rounds in plain arithmetic, which vectorizes (`f32::round_ties_even` is a call to
/// libm's `rintf` per element on baseline x86-64).
#[inline(always)]
fn round(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    (x + ROUND) - ROUND
}

/// `row`'s quantized values, `round(x / s)` in `[-127, 127]`, into `levels`; returns the scale
/// `s` ([`row_scale`]).
fn quantize_row(row: &[f32], levels: &mut [i8]) -> f32 {
    let (scale, inverse) = row_scale(row);
    for (level, &x) in levels.iter_mut().zip(row) {
        *level = round(x * inverse) as i8;
    }
    scale
}

/// Input rows quantized for the kernel: each row's values offset by 128 as unsigned bytes,
/// padded to `depth` inputs and the rows to whole tiles with the bytes of 0.
struct QuantizedRows {
    bytes: Vec<u8>,
    scales: Vec<f32>,
    depth: usize,
}

impl QuantizedRows {
    fn new(xs: &[f32], padded_rows: usize, in_dim: usize, depth: usize, kernel: Kernel) -> Self {
        let mut bytes = vec![OFFSET as u8; padded_rows * depth];
        let mut scales = vec![0.0; padded_rows];
        for ((row, bytes), scale) in xs.chunks(in_dim).zip(bytes.chunks_mut(depth)).zip(&mut scales) {
            *scale = kernel.quantize_activations(row, bytes);
        }
        Self { bytes, scales, depth }
    }

    /// The [`ROWS`] rows from `first_row` on.
    fn tile(&self, first_row: usize) -> &[u8] {
        &self.bytes[first_row * self.depth..(first_row + ROWS) * self.depth]
    }
}

/// The integer sums of one tile: [`ROWS`] activation rows by one panel of [`PANEL`] channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// Scalar code, for any CPU.
    Portable,
    /// AVX-512 VNNI.
    #[cfg(target_arch = "x86_64")]
    Vnni,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    fn best() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            return Kernel::Vnni;
        }
        Kernel::Portable
    }

    /// Every kernel this CPU runs, the portable one first.
    #[cfg(test)]
    fn available() -> Vec<Self> {
        let mut kernels = vec![Kernel::Portable];
        if Kernel::best() != Kernel::Portable {
            kernels.push(Kernel::best());
        }
        kernels
    }

    /// Quantizes one input row into `bytes` as the kernel reads it (levels plus 128); returns
    /// its scale. The same arithmetic in each kernel, with its instructions.
    fn quantize_activations(self, row: &[f32], bytes: &mut [u8]) -> f32 {
        match self {
            Kernel::Portable => quantize_activations(row, bytes),
            // SAFETY: `best` chose this kernel only where the CPU has AVX-512; the length is
            // checked inside.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe { quantize_activations_avx512(row, bytes) },
        }
    }

    /// `Σ_i activations[r][i] · weights[j][i]` for each row `r` of the tile and channel `j` of
    /// the panel.
    #[inline(always)]
    fn tile(self, weights: &[i8], activations: &[u8], depth: usize) -> [[i32; PANEL]; ROWS] {
        assert_eq!(weights.len(), PANEL * depth);
        assert_eq!(activations.len(), ROWS * depth);
        match self {
            Kernel::Portable => portable_tile(weights, activations, depth),
            // SAFETY: `best` chose this kernel only where the CPU has these features, and the
            // slices' lengths were checked above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vnni => unsafe { vnni_tile(weights, activations, depth) },
        }
    }
}

/// `row`'s levels plus 128, in [1, 255], into `bytes`; returns the row's scale.
fn quantize_activations(row: &[f32], bytes: &mut [u8]) -> f32 {
    let (scale, inverse) = row_scale(row);
    for (byte, &x) in bytes.iter_mut().zip(row) {
        *byte = (round(x * inverse) as i32 + OFFSET) as u8;
    }
    scale
}

/// [`quantize_activations`] with AVX-512, 16 values at a time: `vcvtps2dq` rounds to nearest,
/// ties to even, as [`round`] does, and `vpmovdb` keeps each value's low byte, as `as u8`
/// does (compiled from the portable code, the saturating conversions stayed scalar).
///
/// # Safety
/// The CPU must have AVX-512 F; `bytes` must be at least as long as `row`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_activations_avx512(row: &[f32], bytes: &mut [u8]) -> f32 {
    use std::arch::x86_64::*;
    assert!(bytes.len() >= row.len());
    let (scale, inverse) = row_scale(row);
    let factor = _mm512_set1_ps(inverse);
    let offset = _mm512_set1_epi32(OFFSET);
    let whole = row.len() / 16 * 16;
    for start in (0..whole).step_by(16) {
        let xs = _mm512_loadu_ps(row.as_ptr().add(start));
        let levels = _mm512_cvtps_epi32(_mm512_mul_ps(xs, factor));
        let packed = _mm512_cvtepi32_epi8(_mm512_add_epi32(levels, offset));
        _mm_storeu_si128(bytes.as_mut_ptr().add(start).cast(), packed);
    }
    for (byte, &x) in bytes[whole..].iter_mut().zip(&row[whole..]) {
        *byte = (round(x * inverse) as i32 + OFFSET) as u8;
    }
    scale
}

fn portable_tile(weights: &[i8], activations: &[u8], depth: usize) -> [[i32; PANEL]; ROWS] {
    let mut sums = [[0i32; PANEL]; ROWS];
    for (group, weights) in weights.chunks_exact(PANEL * GROUP).enumerate() {
        for (r, sums) in sums.iter_mut().enumerate() {
            let inputs = &activations[r * depth + group * GROUP..][..GROUP];
            for (sum, weights) in sums.iter_mut().zip(weights.chunks_exact(GROUP)) {
                *sum += inputs.iter().zip(weights).map(|(&a, &w)| i32::from(a) * i32::from(w)).sum::<i32>();
            }
        }
    }
    sums
}

/// # Safety
/// The CPU must have AVX-512 F, BW and VNNI; `weights` must hold `PANEL · depth` values and
/// `activations` `ROWS · depth`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni_tile(weights: &[i8], activations: &[u8], depth: usize) -> [[i32; PANEL]; ROWS] {
    use std::arch::x86_64::*;
    const VECTORS: usize = PANEL / 16;
    let mut sums = [[_mm512_setzero_si512(); VECTORS]; ROWS];
    for group in 0..depth / GROUP {
        let panel = weights.as_ptr().add(group * PANEL * GROUP);
        let mut columns = [_mm512_setzero_si512(); VECTORS];
        for (v, column) in columns.iter_mut().enumerate() {
            *column = _mm512_loadu_si512(panel.add(v * 64).cast());
        }
        for (r, sums) in sums.iter_mut().enumerate() {
            let inputs = activations.as_ptr().add(r * depth + group * GROUP).cast::<i32>().read_unaligned();
            let inputs = _mm512_set1_epi32(inputs);
            for (sum, &column) in sums.iter_mut().zip(&columns) {
                *sum = _mm512_dpbusd_epi32(*sum, inputs, column);
            }
        }
    }
    let mut out = [[0i32; PANEL]; ROWS];
    for (out, sums) in out.iter_mut().zip(&sums) {
        for (v, sum) in sums.iter().enumerate() {
            _mm512_storeu_si512(out[v * 16..].as_mut_ptr().cast(), *sum);
        }
    }
    out
}

/// The op behind [`Int8Linear::forward`].
struct Int8Product<'a> {
    layer: &'a Int8Linear,
    relu: bool,
}

impl CustomOp1 for Int8Product<'_> {
    fn name(&self) -> &'static str {
        "int8-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        if storage.dtype() != DType::F32 {
            bail!("int8 linear: f32 inputs only, got {:?}", storage.dtype())
        }
        let xs = contiguous::<f32>(storage, layout)?;
        let mut dims = layout.shape().dims().to_vec();
        match dims.last_mut() {
            Some(last) if *last == self.layer.in_dim => *last = self.layer.out_dim,
            _ => bail!("int8 linear: input of shape {:?} for {} inputs", layout.shape(), self.layer.in_dim),
        }
        let rows = xs.len() / self.layer.in_dim.max(1);
        Ok((CpuStorage::F32(self.layer.product(xs, rows, self.relu)), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::random;
    use candle_core::Device;

    /// A row's scale and quantized values.
    fn levels(row: &[f32]) -> (f32, Vec<i8>) {
        let mut levels = vec![0; row.len()];
        let scale = quantize_row(row, &mut levels);
        (scale, levels)
    }

    /// The layer computes exactly, up to f32 rounding, the product of the dequantized input and
    /// weight: `Σ_i (a·qx_i)(s_j·qw_ji) + b_j`, recomputed here in f64 from the quantized
    /// values, with shapes that leave partial tiles, panels and groups.
    #[test]
    fn computes_the_product_of_the_quantized_values() -> Result<()> {
        for (rows, in_dim, out_dim) in [(1, 4, 1), (5, 13, 70), (9, 256, 130), (4, 64, 64)] {
            let (weight, bias) = (random((out_dim, in_dim), 1)?, random(out_dim, 2)?);
            let xs = random((rows, in_dim), 3)?.to_dtype(DType::F32)?;
            let layer = Int8Linear::quantize(&weight, Some(&bias))?;
            for relu in [false, true] {
                let ys = layer.forward(&xs, relu)?.to_vec2::<f32>()?;
                let weight = weight.to_dtype(DType::F32)?.to_vec2::<f32>()?;
                let bias = bias.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                for (row, ys) in xs.to_vec2::<f32>()?.iter().zip(&ys) {
                    let (a, qx) = levels(row);
                    for (j, &y) in ys.iter().enumerate() {
                        let (s, qw) = levels(&weight[j]);
                        let dot: f64 = qx.iter().zip(&qw).map(|(&x, &w)| f64::from(x) * f64::from(w)).sum();
                        let expected = dot * f64::from(a) * f64::from(s) + f64::from(bias[j]);
                        let expected = if relu { expected.max(0.0) } else { expected };
                        assert!(
                            (f64::from(y) - expected).abs() <= 1e-5 * (1.0 + expected.abs()),
                            "{y} vs {expected}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Against the f32 layer, the error is what 8 bits allow: within half a step of each
    /// operand, summed over the inputs.
    #[test]
    fn stays_within_the_quantization_bound_of_the_f32_layer() -> Result<()> {
        let (rows, in_dim, out_dim) = (7, 96, 40);
        let weight = random((out_dim, in_dim), 4)?.to_dtype(DType::F32)?;
        let xs = random((rows, in_dim), 5)?.to_dtype(DType::F32)?;
        let layer = Int8Linear::quantize(&weight, None)?;
        let ys = layer.forward(&xs, false)?.to_vec2::<f32>()?;
        let exact = xs.matmul(&weight.t()?)?.to_vec2::<f32>()?;
        let (xs, weight) = (xs.to_vec2::<f32>()?, weight.to_vec2::<f32>()?);
        for (r, row) in xs.iter().enumerate() {
            let (a, _) = levels(row);
            for (j, w) in weight.iter().enumerate() {
                let (s, _) = levels(w);
                // |xw - x̂ŵ| ≤ |x||w - ŵ| + |ŵ||x - x̂| ≤ |x| s/2 + (|w| + s/2) a/2.
                let bound: f32 =
                    row.iter().zip(w).map(|(x, w)| x.abs() * s / 2.0 + (w.abs() + s / 2.0) * a / 2.0).sum();
                assert!((ys[r][j] - exact[r][j]).abs() <= bound * 1.001 + 1e-6, "row {r} channel {j}");
            }
        }
        Ok(())
    }

    /// Every kernel this CPU has gives the portable kernel's sums and quantized inputs, bit for
    /// bit.
    #[test]
    fn kernels_agree_exactly() {
        let depth = 40;
        let weights: Vec<i8> = (0..PANEL * depth).map(|i| ((i * 37 + 11) % 255) as i8).collect();
        let activations: Vec<u8> = (0..ROWS * depth).map(|i| ((i * 53 + 7) % 256) as u8).collect();
        let expected = Kernel::Portable.tile(&weights, &activations, depth);
        assert_ne!(expected, [[0; PANEL]; ROWS]);
        let row: Vec<f32> = (0..37).map(|i| ((i * 29 % 23) as f32 - 11.0) * 0.37).collect();
        let mut expected_bytes = vec![0; row.len()];
        let expected_scale = Kernel::Portable.quantize_activations(&row, &mut expected_bytes);
        for kernel in Kernel::available() {
            assert_eq!(kernel.tile(&weights, &activations, depth), expected, "{kernel:?}");
            let mut bytes = vec![0; row.len()];
            assert_eq!(kernel.quantize_activations(&row, &mut bytes), expected_scale, "{kernel:?}");
            assert_eq!(bytes, expected_bytes, "{kernel:?}");
        }
    }

    /// An input of the wrong width, or of another dtype, is an error naming what it got.
    #[test]
    fn refuses_inputs_it_cannot_multiply() -> Result<()> {
        let layer = Int8Linear::quantize(&random((3, 8), 7)?, None)?;
        let wide = Tensor::zeros((2, 9), DType::F32, &Device::Cpu)?;
        assert!(layer
            .forward(&wide, false)
            .unwrap_err()
            .to_string()
            .contains("input of shape [2, 9] for 8 inputs"));
        let f64s = Tensor::zeros((2, 8), DType::F64, &Device::Cpu)?;
        assert!(layer.forward(&f64s, false).unwrap_err().to_string().contains("f32 inputs only"));
        Ok(())
    }

    /// A row of zeros quantizes to zeros (no division by a zero scale), and the output is the bias.
    #[test]
    fn a_zero_row_gives_the_bias() -> Result<()> {
        let weight = random((3, 8), 6)?;
        let bias = Tensor::new(&[1f32, -2.0, 0.5], &Device::Cpu)?;
        let layer = Int8Linear::quantize(&weight, Some(&bias))?;
        let ys = layer.forward(&Tensor::zeros((2, 8), DType::F32, &Device::Cpu)?, false)?;
        assert_eq!(ys.to_vec2::<f32>()?, vec![vec![1.0, -2.0, 0.5]; 2]);
        Ok(())
    }
}
