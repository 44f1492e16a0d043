//! Rotary position embeddings evaluated at explicit token positions.
//!
//! Pruned prefill keeps each surviving token's original position, so RoPE cannot assume the
//! contiguous range `start..start+len` that candle's llama does: the angles are computed from
//! the positions tensor itself.

use candle_core::{DType, Device, Result, Tensor};

use super::config::{Llama3RopeScaling, ModelConfig};
use super::kernels::Kernels;

#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    /// (1, head_dim / 2) f32 inverse frequencies.
    inv_freq: Tensor,
}

impl RotaryEmbedding {
    pub fn new(cfg: &ModelConfig, device: &Device) -> Result<Self> {
        let inv_freq = inverse_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling.as_ref());
        let half = inv_freq.len();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        Ok(Self { inv_freq })
    }

    /// Returns `(cos, sin)` of shape (len, head_dim / 2) in `dtype` for the given u32
    /// positions (shape (len,)).
    pub fn cos_sin(&self, positions: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
        let angles = positions
            .to_dtype(DType::F32)?
            .unsqueeze(1)?
            .broadcast_mul(&self.inv_freq)?;
        Ok((
            angles.cos()?.to_dtype(dtype)?,
            angles.sin()?.to_dtype(dtype)?,
        ))
    }

    /// Applies HF-style (rotate-half) RoPE to `x` of shape (batch, heads, len, head_dim).
    pub fn apply(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        self.apply_with(x, cos, sin, Kernels::Fast)
    }

    /// [`RotaryEmbedding::apply`] for `x` in (batch, len, heads, head_dim) layout (candle's
    /// fused kernel, no backward); returns the same layout.
    pub fn apply_seq_major(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        candle_nn::rotary_emb::rope_thd(&x.contiguous()?, cos, sin)
    }

    /// [`RotaryEmbedding::apply`] with the chosen kernel: candle's fused `rope` has no
    /// backward, `rope_slow` is the same rotation in basic (differentiable) ops.
    pub fn apply_with(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        kernels: Kernels,
    ) -> Result<Tensor> {
        match kernels {
            Kernels::Fast => candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin),
            Kernels::Differentiable => candle_nn::rotary_emb::rope_slow(&x.contiguous()?, cos, sin),
        }
    }
}

/// theta_i = base^(-2i/d), with Llama-3.1's smooth low/high frequency rescaling when asked.
fn inverse_frequencies(
    head_dim: usize,
    base: f64,
    scaling: Option<&Llama3RopeScaling>,
) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / base.powf(2.0 * i as f64 / head_dim as f64);
            let freq = match scaling {
                Some(s) => llama3_scaled(freq, s),
                None => freq,
            };
            freq as f32
        })
        .collect()
}

fn llama3_scaled(freq: f64, s: &Llama3RopeScaling) -> f64 {
    let old_context = s.original_max_position_embeddings as f64;
    let low_freq_wavelen = old_context / s.low_freq_factor;
    let high_freq_wavelen = old_context / s.high_freq_factor;
    let wavelen = 2.0 * std::f64::consts::PI / freq;
    if wavelen < high_freq_wavelen {
        freq
    } else if wavelen > low_freq_wavelen {
        freq / s.factor
    } else {
        let smooth =
            (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        (1.0 - smooth) * freq / s.factor + smooth * freq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frequencies_follow_base_power_law() {
        let f = inverse_frequencies(8, 10_000.0, None);
        assert_eq!(f.len(), 4);
        assert!((f[0] - 1.0).abs() < 1e-7);
        assert!((f[1] - 0.1).abs() < 1e-7);
        assert!((f[3] - 0.001).abs() < 1e-9);
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let s = Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        };
        let plain = inverse_frequencies(128, 500_000.0, None);
        let scaled = inverse_frequencies(128, 500_000.0, Some(&s));
        assert_eq!(plain[0], scaled[0]);
        assert!((plain[63] / 8.0 - scaled[63]).abs() < 1e-12);
    }

    #[test]
    fn sequence_major_rotation_equals_the_head_major_one() -> Result<()> {
        let cfg = ModelConfig::synthetic("tiny").unwrap();
        let rope = RotaryEmbedding::new(&cfg, &Device::Cpu)?;
        let positions = Tensor::new(&[0u32, 3, 4, 9, 17], &Device::Cpu)?;
        let (cos, sin) = rope.cos_sin(&positions, DType::F32)?;
        let x = Tensor::randn(0f32, 1.0, (1, 5, 2, cfg.head_dim), &Device::Cpu)?;
        let seq_major = rope.apply_seq_major(&x, &cos, &sin)?.transpose(1, 2)?;
        let head_major = rope.apply(&x.transpose(1, 2)?, &cos, &sin)?;
        let diff = (seq_major - head_major)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        assert!(diff < 1e-6, "{diff}");
        Ok(())
    }

    #[test]
    fn explicit_positions_match_a_contiguous_range_slice() -> Result<()> {
        let cfg = ModelConfig::synthetic("tiny").unwrap();
        let rope = RotaryEmbedding::new(&cfg, &Device::Cpu)?;
        let all = Tensor::arange(0u32, 10, &Device::Cpu)?;
        let some = Tensor::new(&[2u32, 7, 9], &Device::Cpu)?;
        let (cos_all, _) = rope.cos_sin(&all, DType::F32)?;
        let (cos_some, _) = rope.cos_sin(&some, DType::F32)?;
        let picked = cos_all.index_select(&some, 0)?;
        let diff = (picked - cos_some)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert_eq!(diff, 0.0);
        Ok(())
    }
}
