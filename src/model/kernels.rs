//! The [`Kernels`] switch: whether the forward pass runs candle's fused kernels (inference) or
//! basic-op versions of the same maths that have a backward pass (`sdtp saliency`).
//!
//! A leaf on purpose: the model (`llama.rs`) stores the switch and the ops it drives
//! (`attention.rs`, `rope.rs`, `fused.rs`) read it, so it lives below all of them and imports
//! nothing from the model.

/// Which kernels the forward pass runs. candle's fused kernels for RmsNorm, softmax and RoPE
/// (`candle_nn::ops::rms_norm`, `softmax_last_dim`, `rotary_emb::rope`) have no backward pass,
/// and the KV cache copies keys and values into its buffer in place, which autograd cannot
/// see either. `Differentiable` swaps in candle's basic-op versions of the same maths (and
/// hands attention the fresh keys and values rather than the cache's copy), so that
/// `Tensor::backward` reaches every hidden state: what `sdtp saliency` needs for its
/// gradient × hidden labels. Same layer code either way; `Fast`, the default, is the one
/// every inference path uses, bit for bit as before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kernels {
    #[default]
    Fast,
    /// Slower, numerically a few ulps from `Fast`, and differentiable end to end.
    Differentiable,
}
