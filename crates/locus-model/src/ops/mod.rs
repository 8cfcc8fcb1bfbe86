//! Fused operations with hand-written backward passes.
//!
//! candle composes softmax, layer normalisation and cross-entropy from element-wise operations:
//! each one a pass over memory and an allocation, and the backward of every broadcast sums over
//! leading dimensions with a division per element, on one thread. The functions here do the
//! same work in one or two passes over contiguous rows, in parallel, forward and backward.
//!
//! The fused kernels run on the CPU in f32 and f64 (f64 is what the finite-difference gradient
//! tests use). On any other device or dtype each function composes candle operations instead,
//! with the same result up to rounding, so GPUs keep working unchanged.

mod attention;
mod cross_entropy;
mod dropout;
mod int8;
mod layer_norm;
mod linear;
mod matmul;
mod residual_norm;
pub(crate) mod rows;
mod softmax;
pub(crate) mod sum_exp;

pub use attention::{attention, KeyRows};
pub use cross_entropy::{smoothed_cross_entropy_rows, CrossEntropyLoss};
pub use dropout::{apply_dropout, DropoutMask};
pub use int8::Int8Linear;
pub use layer_norm::layer_norm;
pub use linear::{decoding_layout, linear, linear_heads, linear_relu, linear_without_bias};
pub use residual_norm::add_layer_norm;
pub use softmax::{log_softmax_last_dim, softmax_last_dim};
