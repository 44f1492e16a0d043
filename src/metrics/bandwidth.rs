//! The analytic bytes one decode step reads, behind `sdtp profile end2end`'s decode bandwidth
//! and its share of the device's measured copy rate (`crate::device::copy_rate_bytes_per_s`).
//!
//! A decode step feeds one token through the model: it reads every weight it multiplies by
//! once (each layer's matrices and norms, the final norm and the lm_head; one row of the
//! embedding table, which is left out), and every layer's whole KV cache. Step k of a run
//! (k = 1 … steps) first appends the new token's key and value, so layer l then attends over
//! `len_l + k` entries, `len_l` being the layer's length after the prefill (a pruned prefill
//! leaves the layers different lengths). Per step, on average:
//!
//! `kv = Σ_l entry_bytes · (len_l + (steps + 1) / 2)`, with
//! `entry_bytes = 2 (K and V) · kv_heads · head_dim · dtype bytes`.
//!
//! Activations, the appended entries' writes, logits and scratch are not counted: at one
//! token they are small next to the weights and the cache.

use serde::{Deserialize, Serialize};

/// Bytes read per decode step, averaged over a run's steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeBytes {
    /// Weights read per step (matrices, norms, lm_head; not the embedding table).
    pub weights: u64,
    /// KV cache read per step, every layer's whole cache, averaged over the steps.
    pub kv: u64,
}

impl DecodeBytes {
    pub fn total(&self) -> u64 {
        self.weights + self.kv
    }

    /// Bytes per step × steps per second, in GB/s (10⁹ bytes).
    pub fn bandwidth_gb_s(&self, steps_per_s: f64) -> f64 {
        self.total() as f64 * steps_per_s / 1e9
    }
}

/// Bytes of one cached token of one layer: its key and its value over all KV heads.
pub fn kv_entry_bytes(kv_heads: usize, head_dim: usize, dtype_bytes: usize) -> u64 {
    (2 * kv_heads * head_dim * dtype_bytes) as u64
}

/// Mean bytes read per decode step over `steps` steps, the layers holding `prefill_lens`
/// entries after the prefill; `None` for a run without decode steps.
///
/// Exact in integers: over the run the KV reads sum to
/// `entry_bytes · (steps · Σ len_l + layers · steps (steps + 1) / 2)`, and `entry_bytes` is even,
/// so the mean per step is a whole number of bytes.
pub fn decode_bytes_per_token(
    weight_bytes: u64,
    entry_bytes: u64,
    prefill_lens: &[usize],
    steps: usize,
) -> Option<DecodeBytes> {
    if steps == 0 {
        return None;
    }
    let held: u64 = prefill_lens.iter().map(|&l| l as u64).sum();
    let layers = prefill_lens.len() as u64;
    let steps = steps as u64;
    // Σ_k Σ_l (len_l + k) / steps = Σ len_l + layers (steps + 1) / 2.
    let kv = entry_bytes * held + entry_bytes * layers * (steps + 1) / 2;
    Some(DecodeBytes {
        weights: weight_bytes,
        kv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_reads_are_the_mean_cache_over_the_steps() {
        // 2 KV heads × head_dim 16 × f32: 2 · 2 · 16 · 4 = 256 bytes per token per layer.
        let entry = kv_entry_bytes(2, 16, 4);
        assert_eq!(entry, 256);
        // Three layers after a pruned prefill hold 10, 8 and 5 tokens; 4 decode steps read
        // 11+9+6, 12+10+7, 13+11+8, 14+12+9 entries: 26, 29, 32, 35, mean 30.5.
        let b = decode_bytes_per_token(1000, entry, &[10, 8, 5], 4).unwrap();
        assert_eq!(b.kv, 256 * 61 / 2);
        assert_eq!(b.kv, 7808);
        assert_eq!(b.weights, 1000);
        assert_eq!(b.total(), 8808);
        // Summed step by step, the same.
        let summed: u64 = (1..=4u64)
            .map(|k| [10u64, 8, 5].iter().map(|l| entry * (l + k)).sum::<u64>())
            .sum();
        assert_eq!(summed / 4, b.kv);
        // One step reads the prefill's cache and the one appended entry per layer.
        let one = decode_bytes_per_token(0, entry, &[10, 8, 5], 1).unwrap();
        assert_eq!(one.kv, entry * (23 + 3));
        assert_eq!(decode_bytes_per_token(1000, entry, &[10], 0), None);
    }

    #[test]
    fn bandwidth_is_bytes_times_rate_in_decimal_gigabytes() {
        let b = DecodeBytes {
            weights: 14_000_000_000,
            kv: 1_000_000_000,
        };
        // A 7B bf16 model at 20 tok/s with a 1 GB cache reads 300 GB/s.
        assert!((b.bandwidth_gb_s(20.0) - 300.0).abs() < 1e-9);
    }
}
