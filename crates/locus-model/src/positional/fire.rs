//! FIRE, functional interpolation for relative positional encoding (Li et al., ICLR 2024,
//! "Functional Interpolation for Relative Positions Improves Long Context Transformers",
//! <https://arxiv.org/abs/2310.04418>).
//!
//! Each head adds to a query-key score a learned function of their distance, *normalised by the
//! query's position*, so that the function's input stays in a bounded range however long the
//! sequence (eq. 5 with the log transform and threshold of section 3.2):
//!
//! `score_hij += f_θ(ψ(i - j) / ψ(max(L, i)))_h`, `ψ(x) = log(|c · x| + 1)`
//!
//! where `i` and `j` are the query's and key's positions in their sequence, `f_θ: ℝ → ℝ^heads`
//! is an MLP (one hidden ReLU layer of `mlp_width` units), `c` a learned scale (starting at
//! `init_c`) and `L = |l_multiplier · init_threshold|` a learned threshold (`l_multiplier` starts
//! at 1). This follows the paper's reference code (appendix, as in
//! <https://github.com/mcleish7/arithmetic>, `cramming/architectures/embeddings.py`): `ε = 1e-6`
//! is added to the normaliser, the MLP's layers are drawn as PyTorch's `nn.Linear` defaults
//! (uniform in `±1/√fan_in`), and `|c · (i - j)|` makes the bias of a key after the query (in the
//! encoder) that of the key as far before it. The paper's default `init_c = 0.1`, `L = 512`,
//! `mlp_width = 32`. One function for the whole stack, shared by its layers (the paper's
//! FIRE-S); the distances `|i - j|` and the positions are fixed tables ([`TableCache`]).
//!
//! The bias depends on the query's own position, not only on the distance: in a batch whose
//! sequences joined a decoder at different steps, each sequence gets its own (see
//! [`Fire::bias`]).

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Init, VarBuilder};

use super::absolute::Embedding;
use super::cache::{absolute_distances, Span, TableCache};
use super::{Hooks, PositionTable, Relative, Rotation, Weights};
use crate::dropout::DropoutRng;
use crate::error::Result;

/// Added to the normaliser `ψ(max(L, i))` (the reference code's `eps`).
const EPS: f64 = 1e-6;

pub(super) fn default_mlp_width() -> usize {
    32
}

pub(super) fn default_init_c() -> f64 {
    0.1
}

pub(super) fn default_init_threshold() -> f64 {
    512.0
}

/// The rule `mlp_width`, `init_c` or `init_threshold` breaks, if any.
pub(super) fn validate(field: &str, mlp_width: usize, init_c: f64, init_threshold: f64) -> Option<String> {
    if mlp_width == 0 {
        return Some(format!("{field}.mlp_width (0) must be at least 1"));
    }
    if !(init_c > 0.0 && init_c.is_finite()) {
        return Some(format!("{field}.init_c ({init_c}) must be a positive number"));
    }
    (!(init_threshold > 0.0 && init_threshold.is_finite()))
        .then(|| format!("{field}.init_threshold ({init_threshold}) must be a positive number"))
}

/// Positions `0..len` as a column, `(len, 1)`, in `dtype`.
fn position_column(len: usize, dtype: DType, device: &Device) -> candle_core::Result<Tensor> {
    Tensor::arange(0u32, len as u32, device)?.to_dtype(dtype)?.reshape((len, 1))
}

/// A built FIRE bias: the MLP, the log scale `c` and the threshold.
#[derive(Debug, Clone)]
pub struct Fire {
    /// First layer, `(mlp_width, 1)` and `(mlp_width,)`.
    hidden_weight: Tensor,
    hidden_bias: Tensor,
    /// Second layer, `(n_heads, mlp_width)` and `(n_heads,)`.
    out_weight: Tensor,
    out_bias: Tensor,
    /// `c`, a scalar.
    c: Tensor,
    /// `l_multiplier`, a scalar; the threshold is `|l_multiplier · init_threshold|`.
    l_multiplier: Tensor,
    init_threshold: f64,
    distances: TableCache,
    positions: TableCache,
}

impl Fire {
    /// A FIRE bias for `n_heads` heads, its weights created under `vb`: `mlp.0.weight`,
    /// `mlp.0.bias`, `mlp.2.weight`, `mlp.2.bias` (the reference's `nn.Sequential` names),
    /// `c` (starting at `init_c`) and `l_multiplier` (starting at 1).
    pub fn new(
        n_heads: usize,
        mlp_width: usize,
        init_c: f64,
        init_threshold: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        let uniform = |fan_in: usize| {
            let bound = 1.0 / (fan_in as f64).sqrt();
            Init::Uniform { lo: -bound, up: bound }
        };
        let mlp = vb.pp("mlp");
        Ok(Self {
            hidden_weight: mlp.get_with_hints((mlp_width, 1), "0.weight", uniform(1))?,
            hidden_bias: mlp.get_with_hints(mlp_width, "0.bias", uniform(1))?,
            out_weight: mlp.get_with_hints((n_heads, mlp_width), "2.weight", uniform(mlp_width))?,
            out_bias: mlp.get_with_hints(n_heads, "2.bias", uniform(mlp_width))?,
            c: vb.get_with_hints((), "c", Init::Const(init_c))?,
            l_multiplier: vb.get_with_hints((), "l_multiplier", Init::Const(1.0))?,
            init_threshold,
            distances: TableCache::new(),
            positions: TableCache::new(),
        })
    }

    /// `ψ(i - j) / ψ(max(L, i))`, the MLP's input, for the queries and keys of `span`: one
    /// `(q_len, k_len)` matrix, or one per sequence when `firsts` gives each sequence's own
    /// position of its first query (the distances are those of `span` either way).
    ///
    /// # Shapes
    /// Returns `(rows, q_len, k_len)`, `rows` 1 or `firsts.len()`.
    pub fn normalized_distances(&self, span: Span, firsts: Option<&[usize]>) -> candle_core::Result<Tensor> {
        let (dtype, device) = (self.c.dtype(), self.c.device());
        let distances =
            self.distances.distances(0, span, dtype, device, |n| absolute_distances(n, dtype, device))?;
        let positions = match firsts {
            None => self
                .positions
                .rows(0, span.q_offset, span.q_len, dtype, device, |n| position_column(n, dtype, device))?
                .unsqueeze(0)?,
            Some(firsts) => {
                let values: Vec<u32> =
                    firsts.iter().flat_map(|&first| (first..first + span.q_len).map(|p| p as u32)).collect();
                Tensor::from_vec(values, (firsts.len(), span.q_len, 1), device)?.to_dtype(dtype)?
            }
        };
        let c = self.c.abs()?;
        let psi = |x: &Tensor| -> candle_core::Result<Tensor> { (x.broadcast_mul(&c)? + 1.0)?.log() };
        let threshold = (self.l_multiplier.abs()? * self.init_threshold)?;
        let normalizer = (psi(&positions.broadcast_maximum(&threshold)?)? + EPS)?;
        psi(&distances)?.unsqueeze(0)?.broadcast_div(&normalizer)
    }

    /// The bias for the queries and keys of `span` (see [`Fire::normalized_distances`] for
    /// `firsts`), in the weights' dtype, differentiable w.r.t. all of them.
    ///
    /// # Shapes
    /// Returns `(rows, n_heads, q_len, k_len)`, `rows` 1 or `firsts.len()`.
    pub fn bias(&self, span: Span, firsts: Option<&[usize]>) -> candle_core::Result<Tensor> {
        let inputs = self.normalized_distances(span, firsts)?;
        let (rows, q_len, k_len) = inputs.dims3()?;
        let width = self.hidden_bias.dim(0)?;
        let hidden = inputs
            .reshape((rows * q_len * k_len, 1))?
            .broadcast_mul(&self.hidden_weight.reshape((1, width))?)?
            .broadcast_add(&self.hidden_bias)?
            .relu()?;
        let heads = hidden.matmul(&self.out_weight.t()?)?.broadcast_add(&self.out_bias)?;
        let n_heads = heads.dim(D::Minus1)?;
        heads.reshape((rows, q_len, k_len, n_heads))?.permute((0, 3, 1, 2))?.contiguous()
    }
}

impl Hooks for Fire {
    fn add_layer(&mut self, _: VarBuilder) -> Result<()> {
        Ok(())
    }

    fn embed(
        &self,
        _: usize,
        _: Span,
        _: Option<&mut DropoutRng>,
        _: DType,
        _: &Device,
    ) -> Result<Option<Embedding>> {
        Ok(None)
    }

    fn rotate(&self, _: Span, _: DType, _: &Device) -> Result<Option<Rotation>> {
        Ok(None)
    }

    fn score_bias(
        &self,
        span: Span,
        firsts: Option<&[usize]>,
        dtype: DType,
        _: &Device,
    ) -> Result<Option<Tensor>> {
        Ok(Some(self.bias(span, firsts)?.to_dtype(dtype)?))
    }

    fn relative(&self, _: Span, _: &Device) -> Result<Option<Relative<'_>>> {
        Ok(None)
    }

    /// The MLP's input, then each head's bias.
    fn tables(&self, len: usize, weights: Weights) -> Result<Vec<PositionTable>> {
        let span = Span::same(len, 0);
        let to_cpu =
            |t: Tensor| -> candle_core::Result<Tensor> { t.to_dtype(DType::F32)?.to_device(&Device::Cpu) };
        let mut tables = vec![PositionTable::pairs(
            format!("FIRE input ψ(i - j) / ψ(max(L, i)) ({})", weights.describe()),
            to_cpu(self.normalized_distances(span, None)?.squeeze(0)?)?,
        )];
        let bias = to_cpu(self.bias(span, None)?.squeeze(0)?)?;
        tables.extend(PositionTable::per_head(&bias, |head| {
            format!("head {head} bias ({})", weights.describe())
        })?);
        Ok(tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_gradients, random};
    use candle_core::Var;
    use candle_nn::VarMap;

    fn new_fire(n_heads: usize, width: usize, init_c: f64, init_threshold: f64) -> Result<(Fire, Vec<Var>)> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let fire = Fire::new(n_heads, width, init_c, init_threshold, vb.pp("fire"))?;
        let mut vars: Vec<(String, Var)> =
            varmap.data().lock().unwrap().iter().map(|(name, var)| (name.clone(), var.clone())).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Ok((fire, vars.into_iter().map(|(_, var)| var).collect()))
    }

    /// The reference code run by hand: with c = 0.1 and L = 4 (init_threshold 4), a query at
    /// position 6 and a key at 1 give ψ(5) / ψ(max(4, 6)) = log(1.5) / (log(1.6) + 1e-6); a
    /// query at 2 (below L) and a key at 0 give log(1.2) / (log(1.4) + 1e-6); a key after the
    /// query counts as far as the one before.
    #[test]
    fn inputs_are_the_log_distance_over_the_log_thresholded_position() -> Result<()> {
        let (fire, _) = new_fire(2, 3, 0.1, 4.0)?;
        let inputs = fire.normalized_distances(Span::same(8, 0), None)?.squeeze(0)?.to_vec2::<f64>()?;
        let close = |got: f64, want: f64| assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        close(inputs[6][1], 1.5f64.ln() / (1.6f64.ln() + 1e-6));
        close(inputs[2][0], 1.2f64.ln() / (1.4f64.ln() + 1e-6));
        close(inputs[2][4], inputs[2][0]);
        close(inputs[5][5], 0.0);
        Ok(())
    }

    /// The MLP by hand: the bias of head h at input x is `Σ_u w2[h][u] · relu(w1[u] · x + b1[u])
    /// + b2[h]`, evaluated here with plain loops over the stored weights.
    #[test]
    fn bias_is_the_mlp_of_the_inputs() -> Result<()> {
        let (fire, _) = new_fire(3, 5, 0.1, 6.0)?;
        let span = Span { q_len: 3, k_len: 9, q_offset: 6, k_offset: 0 };
        let inputs = fire.normalized_distances(span, None)?.squeeze(0)?.to_vec2::<f64>()?;
        let bias = fire.bias(span, None)?.squeeze(0)?.to_vec3::<f64>()?;
        let w1 = fire.hidden_weight.flatten_all()?.to_vec1::<f64>()?;
        let b1 = fire.hidden_bias.to_vec1::<f64>()?;
        let w2 = fire.out_weight.to_vec2::<f64>()?;
        let b2 = fire.out_bias.to_vec1::<f64>()?;
        for (h, head) in bias.iter().enumerate() {
            for (i, row) in head.iter().enumerate() {
                for (j, &got) in row.iter().enumerate() {
                    let x = inputs[i][j];
                    let want = b2[h] + (0..5).map(|u| w2[h][u] * (w1[u] * x + b1[u]).max(0.0)).sum::<f64>();
                    assert!((got - want).abs() < 1e-12, "head {h}, query {i}, key {j}: {got} vs {want}");
                }
            }
        }
        Ok(())
    }

    /// Below the threshold only distances matter; past it, a query's position changes its bias.
    #[test]
    fn the_threshold_bounds_where_positions_matter() -> Result<()> {
        let (fire, vars) = new_fire(2, 4, 0.1, 16.0)?;
        // Every hidden unit on and read with weight 1 (biases 0): a random draw with all four
        // off, or output weights that cancel, would hide the positions from the last assertion.
        let var_of = |tensor: &Tensor| vars.iter().find(|var| var.as_tensor().id() == tensor.id()).unwrap();
        var_of(&fire.hidden_weight).set(&Tensor::ones((4, 1), DType::F64, &Device::Cpu)?)?;
        var_of(&fire.hidden_bias).set(&Tensor::zeros(4, DType::F64, &Device::Cpu)?)?;
        var_of(&fire.out_weight).set(&Tensor::ones((2, 4), DType::F64, &Device::Cpu)?)?;
        let early = fire.bias(Span { q_len: 2, k_len: 6, q_offset: 4, k_offset: 0 }, None)?;
        let later = fire.bias(Span { q_len: 2, k_len: 6, q_offset: 10, k_offset: 6 }, None)?;
        assert_eq!((&early - &later)?.abs()?.max_all()?.to_scalar::<f64>()?, 0.0);
        let far = fire.bias(Span { q_len: 2, k_len: 6, q_offset: 40, k_offset: 36 }, None)?;
        assert!((early - far)?.abs()?.max_all()?.to_scalar::<f64>()? > 1e-3);
        Ok(())
    }

    /// Sequences of a ragged batch get the bias of their own positions: in a decoder step at
    /// batch position 7, a sequence whose first query is its own position `first` started at
    /// batch position `7 - first`, and its keys from there on score as those of the same
    /// sequence decoded alone (queries at `first`, keys at `0..=first`).
    #[test]
    fn each_sequence_of_a_ragged_batch_gets_its_own_positions() -> Result<()> {
        let (fire, _) = new_fire(2, 4, 0.3, 3.0)?;
        let span = Span::after(1, 7);
        let firsts = [7, 2, 0];
        let ragged = fire.bias(span, Some(&firsts))?;
        assert_eq!(ragged.dims(), &[3, 2, 1, 8]);
        for (row, &first) in firsts.iter().enumerate() {
            let alone = fire.bias(Span::after(1, first), None)?.squeeze(0)?;
            let own_keys = ragged.get(row)?.narrow(2, 7 - first, first + 1)?;
            let diff = (own_keys - alone)?.abs()?.max_all()?.to_scalar::<f64>()?;
            assert!(diff < 1e-12, "row {row}: {diff}");
        }
        Ok(())
    }

    /// Central differences (h = 1e-5) of `sum(bias · w)` against backprop, for every weight:
    /// the MLP, c and the threshold (the queries, at 9 to 11, are below L = 20, so it has a
    /// gradient).
    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let (fire, vars) = new_fire(2, 4, 0.2, 20.0)?;
        assert_eq!(vars.len(), 6);
        let w = random((1, 2, 3, 12), 4)?;
        let vars: Vec<&Var> = vars.iter().collect();
        check_gradients(&vars, || (fire.bias(Span::after(3, 9), None)? * &w)?.sum_all())?;
        Ok(())
    }
}
