//! Causal grouped-query attention, computed one block of queries at a time so that no more
//! than `heads × QUERY_BLOCK × keys` scores exist at once (a 32K prompt would otherwise need
//! a 32K × 32K matrix per head).

use candle_core::{DType, Result, Tensor, D};

use super::kernels::Kernels;

/// Queries per block. Bounds the score buffer; large enough to keep matmuls efficient.
pub const QUERY_BLOCK: usize = 256;

/// Attention of `q` (1, heads, t, d) over `k`/`v` (1, kv_heads, n, d), where the t queries
/// are the last t of the n cached tokens: query i may see keys `0..=n - t + i`.
/// Returns (1, heads, t, d) in the dtype of `q`.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    {
        if let Some(out) = super::cudnn::try_cudnn_attention(q, k, v)? {
            return Ok(out);
        }
        if let Some(out) = super::flash::try_flash_attention(q, k, v)? {
            return Ok(out);
        }
    }
    if let Some(out) = super::cpu_attention::try_cpu_attention(q, k, v)? {
        return Ok(out);
    }
    causal_attention_with(q, k, v, Kernels::Fast)
}

/// [`causal_attention`], and with `tail = Some(m)` also [`tail_attention`] of the last m
/// queries. On CUDA, when cuDNN runs the attention, its row statistics feed the fused
/// scorer, which then needs a single pass over the tail rows.
pub fn causal_attention_and_tail(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    tail: Option<usize>,
) -> Result<(Tensor, Option<Tensor>)> {
    #[cfg(feature = "cuda")]
    if let Some(tail) = tail {
        if let Some((out, stats)) = super::cudnn::try_cudnn_attention_with_stats(q, k, v)? {
            let scores = match super::flash::try_tail_attention(q, k, tail, Some(&stats))? {
                Some(scores) => scores,
                None => tail_attention(q, k, tail)?,
            };
            return Ok((out, Some(scores)));
        }
    }
    let scores = tail.map(|m| tail_attention(q, k, m)).transpose()?;
    Ok((causal_attention(q, k, v)?, scores))
}

/// [`causal_attention`] with the chosen softmax kernel: candle's fused `softmax_last_dim`
/// has no backward, `Kernels::Differentiable` uses the basic-op `softmax`.
pub fn causal_attention_with(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kernels: Kernels,
) -> Result<Tensor> {
    let (_, _, t, _) = q.dims4()?;
    let mut blocks = Vec::with_capacity(t.div_ceil(QUERY_BLOCK));
    let mut start = 0;
    while start < t {
        let len = QUERY_BLOCK.min(t - start);
        let q_block = q.narrow(2, start, len)?;
        let (probs, visible) = block_probabilities(&q_block, k, t - start, kernels)?;
        let v_visible = v.narrow(2, 0, visible)?;
        blocks.push(weighted_values(&probs, &v_visible, q.dtype())?);
        start += len;
    }
    Tensor::cat(&blocks, 2)
}

/// Mean attention each key receives from the last `tail` queries, per head: row h is the
/// mean over those queries of head h's softmax, so each row sums to 1. What the `attention`
/// scorer reads (it combines the heads as the schedule says). Returns (heads, n) f32.
pub fn tail_attention(q: &Tensor, k: &Tensor, tail: usize) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(scores) = super::flash::try_tail_attention(q, k, tail, None)? {
        return Ok(scores);
    }
    let (_, heads, t, _) = q.dims4()?;
    let tail = tail.clamp(1, t);
    let n = k.dim(2)?;
    let mut total: Option<Tensor> = None;
    let mut start = t - tail;
    while start < t {
        let len = QUERY_BLOCK.min(t - start);
        let (probs, visible) =
            block_probabilities(&q.narrow(2, start, len)?, k, t - start, Kernels::Fast)?;
        // (kv_heads, groups, len, visible) -> (heads, visible), padded to n with zeros for
        // the keys these queries cannot see yet. Heads are numbered kv_head * groups + group,
        // as in the model's q projection.
        let summed = probs.sum(2)?.reshape((heads, visible))?;
        let summed = if visible < n {
            Tensor::cat(
                &[
                    &summed,
                    &Tensor::zeros((heads, n - visible), DType::F32, q.device())?,
                ],
                1,
            )?
        } else {
            summed
        };
        total = Some(match total {
            Some(acc) => (acc + summed)?,
            None => summed,
        });
        start += len;
    }
    match total {
        Some(total) => total / tail as f64,
        None => candle_core::bail!("tail attention over an empty sequence"),
    }
}

/// Softmax probabilities (f32) of a block of queries that are followed by `remaining - len`
/// more queries, as (kv_heads, groups, len, visible). Keys beyond the block's last query are
/// never read, so `visible = n - (remaining - len)`.
fn block_probabilities(
    q_block: &Tensor,
    k: &Tensor,
    remaining: usize,
    kernels: Kernels,
) -> Result<(Tensor, usize)> {
    let (_, heads, len, dim) = q_block.dims4()?;
    let (_, kv_heads, n, _) = k.dims4()?;
    if remaining > n || len > remaining {
        candle_core::bail!("attention: {remaining} queries cannot follow {n} keys");
    }
    let groups = heads / kv_heads;
    let visible = n - (remaining - len);
    let first_query_index = visible - len;
    // Scale before the product so half-precision scores stay small; the product runs in the
    // model's dtype (tensor cores on CUDA) and only the scores are widened to f32.
    let scale = 1.0 / (dim as f64).sqrt();
    let q_grouped = (q_block.reshape((kv_heads, groups * len, dim))? * scale)?;
    let k_visible = k.narrow(2, 0, visible)?.squeeze(0)?;
    let scores = q_grouped
        .matmul(&k_visible.t()?)?
        .to_dtype(DType::F32)?
        .reshape((kv_heads, groups, len, visible))?;
    let mask = causal_mask(len, visible, first_query_index, q_block.device())?;
    let masked = scores.broadcast_add(&mask)?;
    let probs = match kernels {
        Kernels::Fast => candle_nn::ops::softmax_last_dim(&masked)?,
        Kernels::Differentiable => candle_nn::ops::softmax(&masked, D::Minus1)?,
    };
    Ok((probs, visible))
}

/// (len, visible) additive f32 mask, built on the device: query r (absolute index
/// `first + r`) sees keys `0..=first + r`.
fn causal_mask(
    len: usize,
    visible: usize,
    first: usize,
    device: &candle_core::Device,
) -> Result<Tensor> {
    let queries = Tensor::arange(first as u32, (first + len) as u32, device)?.reshape((len, 1))?;
    let keys = Tensor::arange(0u32, visible as u32, device)?.reshape((1, visible))?;
    let hidden = keys.broadcast_gt(&queries)?;
    let zeros = Tensor::zeros((len, visible), DType::F32, device)?;
    let neg_inf = Tensor::full(f32::NEG_INFINITY, (len, visible), device)?;
    hidden.where_cond(&neg_inf, &zeros)
}

fn weighted_values(probs: &Tensor, v: &Tensor, dtype: DType) -> Result<Tensor> {
    let (kv_heads, groups, len, visible) = probs.dims4()?;
    let dim = v.dim(D::Minus1)?;
    let out = probs
        .reshape((kv_heads, groups * len, visible))?
        .to_dtype(dtype)?
        .matmul(&v.squeeze(0)?.contiguous()?)?;
    out.reshape((1, kv_heads * groups, len, dim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Textbook attention with the whole n×n matrix and repeated kv heads.
    fn naive(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (_, heads, t, dim) = q.dims4()?;
        let (_, kv_heads, n, _) = k.dims4()?;
        let groups = heads / kv_heads;
        let rep = |x: &Tensor| -> Result<Tensor> {
            let (_, h, n, d) = x.dims4()?;
            x.unsqueeze(2)?
                .expand((1, h, groups, n, d))?
                .reshape((1, h * groups, n, d))
        };
        let (k, v) = (rep(k)?, rep(v)?);
        let scores = (q.matmul(&k.t()?)? / (dim as f64).sqrt())?;
        let mask = causal_mask(t, n, n - t, q.device())?;
        let probs = candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?;
        probs.matmul(&v.contiguous()?)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()
    }

    #[test]
    fn blocked_and_fused_match_naive_across_block_edges_and_gqa() -> Result<()> {
        let dev = Device::Cpu;
        for (t, n, dim) in [
            (1, 1, 8),
            (7, 7, 8),
            (QUERY_BLOCK + 3, QUERY_BLOCK + 3, 8),
            (1, 40, 8),
            (300, 520, 8),
            (65, 65, 64),
            (1, 700, 64),
            (130, 1100, 64),
        ] {
            let q = Tensor::randn(0f32, 1.0, (1, 6, t, dim), &dev)?;
            // K and V as the cache holds them: the first n rows of a larger buffer.
            let k = Tensor::randn(0f32, 1.0, (1, 2, n + 9, dim), &dev)?.narrow(2, 0, n)?;
            let v = Tensor::randn(0f32, 1.0, (1, 2, n + 9, dim), &dev)?.narrow(2, 0, n)?;
            let want = naive(&q, &k, &v)?;
            let blocked = causal_attention_with(&q, &k, &v, Kernels::Fast)?;
            let d = max_diff(&blocked, &want)?;
            assert!(d < 1e-5, "blocked t={t} n={n} dim={dim} diff={d}");
            // The CPU path (super::cpu_attention) of the dispatching entry point.
            let fused = causal_attention(&q, &k, &v)?;
            let d = max_diff(&fused, &want)?;
            assert!(d < 1e-5, "fused t={t} n={n} dim={dim} diff={d}");
        }
        Ok(())
    }

    /// Softmax probabilities of every query over every key, (heads, t, n), the whole matrix.
    fn naive_probs(q: &Tensor, k: &Tensor) -> Result<Tensor> {
        let (_, heads, t, dim) = q.dims4()?;
        let (_, kv_heads, n, d) = k.dims4()?;
        let groups = heads / kv_heads;
        let k = k
            .unsqueeze(2)?
            .expand((1, kv_heads, groups, n, d))?
            .reshape((1, heads, n, d))?;
        let scores = (q.matmul(&k.t()?)? / (dim as f64).sqrt())?;
        let mask = causal_mask(t, n, n - t, q.device())?;
        candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&mask)?)?.squeeze(0)
    }

    #[test]
    fn tail_attention_is_each_heads_mean_over_the_last_queries() -> Result<()> {
        let dev = Device::Cpu;
        // 300 queries cross a query block; 4 heads over 2 kv heads check the head order.
        for (t, n, tail) in [(50, 50, 5), (300, 320, 270), (7, 7, 1)] {
            let q = Tensor::randn(0f32, 1.0, (1, 4, t, 8), &dev)?;
            let k = Tensor::randn(0f32, 1.0, (1, 2, n, 8), &dev)?;
            let scores = tail_attention(&q, &k, tail)?;
            assert_eq!(scores.dims2()?, (4, n));
            let expected = (naive_probs(&q, &k)?.narrow(1, t - tail, tail)?.sum(1)? / tail as f64)?;
            let d = max_diff(&scores, &expected)?;
            assert!(d < 1e-5, "t={t} n={n} tail={tail}: {d}");
            // Each head's row is a distribution over the keys.
            for total in scores.sum(1)?.to_vec1::<f32>()? {
                assert!((total - 1.0).abs() < 1e-5, "{total}");
            }
            // The last key is seen only by the last query: its share is that query's / tail.
            let last = scores.narrow(1, n - 1, 1)?.squeeze(1)?.to_vec1::<f32>()?;
            let from_last_query = naive_probs(&q, &k)?
                .narrow(1, t - 1, 1)?
                .narrow(2, n - 1, 1)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            for (s, p) in last.iter().zip(&from_last_query) {
                assert!((s - p / tail as f32).abs() < 1e-6, "{s} vs {p}/{tail}");
            }
        }
        Ok(())
    }
}
