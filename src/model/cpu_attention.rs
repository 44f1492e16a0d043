//! Causal grouped-query attention on the CPU without materialising the scores: each task
//! (one head, one tile of queries) walks the visible keys a tile at a time, multiplies with
//! `gemm`, keeps a running maximum and sum per query (FlashAttention's online softmax) and
//! accumulates the weighted values in a buffer that stays in cache. The blocked path in
//! `model::attention` builds a mask and a probability matrix per block of queries and runs
//! a scalar `exp` over every entry, masked ones included; at 4K tokens on a small model that
//! was a large share of a CPU prefill. Keys a query cannot see are never read, and `exp`
//! runs on whole vectors ([`exp_from_max`]).

use candle_core::{
    backend::BackendStorage, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor,
};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Queries per task: the accumulator (`QUERY_TILE × head_dim` f32) and one score tile stay in
/// L2 while the keys stream past.
const QUERY_TILE: usize = 64;
/// Keys per step: one `QUERY_TILE × KEY_TILE` score tile (64 KiB).
const KEY_TILE: usize = 256;

/// `model::attention::causal_attention` on the CPU for f32 tensors whose last dimension is
/// contiguous; `None` for anything else (another device or dtype), which the caller then
/// computes the blocked way.
pub fn try_cpu_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<Tensor>> {
    let ok = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.rank() == 4;
    if !(ok(q) && ok(k) && ok(v)) {
        return Ok(None);
    }
    q.apply_op3_no_bwd(k, v, &CausalAttention).map(Some)
}

struct CausalAttention;

/// Where a (1, heads, tokens, dim) tensor's values are: element (h, i, c) is at
/// `start + h * head + i * token + c`.
#[derive(Clone, Copy)]
struct View {
    heads: usize,
    tokens: usize,
    dim: usize,
    start: usize,
    head: usize,
    token: usize,
}

impl View {
    fn of(layout: &Layout, what: &str) -> Result<Self> {
        let (batch, heads, tokens, dim) = layout.shape().dims4()?;
        let stride = layout.stride();
        if batch != 1 || (dim > 1 && stride[3] != 1) {
            candle_core::bail!(
                "cpu attention: {what} must be (1, heads, tokens, dim) with contiguous rows"
            );
        }
        Ok(Self {
            heads,
            tokens,
            dim,
            start: layout.start_offset(),
            head: stride[1],
            token: stride[2],
        })
    }

    fn at(&self, head: usize, token: usize) -> usize {
        self.start + head * self.head + token * self.token
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "sdtp-cpu-causal-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (View::of(ql, "q")?, View::of(kl, "k")?, View::of(vl, "v")?);
        if k.heads != v.heads
            || k.tokens != v.tokens
            || k.dim != q.dim
            || v.dim != q.dim
            || k.heads == 0
            || q.heads % k.heads != 0
            || q.tokens > k.tokens
        {
            candle_core::bail!(
                "cpu attention: q {:?} does not fit k {:?} and v {:?}",
                ql.shape(),
                kl.shape(),
                vl.shape()
            );
        }
        let (CpuStorage::F32(qd), CpuStorage::F32(kd), CpuStorage::F32(vd)) = (qs, ks, vs) else {
            candle_core::bail!("cpu attention: f32 only, got {:?}", qs.dtype());
        };
        let (heads, t, d) = (q.heads, q.tokens, q.dim);
        let mut out = vec![0f32; heads * t * d];
        if t == 0 || d == 0 {
            return Ok((CpuStorage::F32(out), Shape::from((1, heads, t, d))));
        }
        let inputs = Inputs {
            q: (qd, q),
            k: (kd, k),
            v: (vd, v),
            groups: heads / k.heads,
        };
        // One task per head and tile of QUERY_TILE queries (the last tile of a head may be
        // short); later tiles see more keys, which rayon's work stealing evens out.
        out.par_chunks_mut(t * d)
            .enumerate()
            .for_each(|(head, head_out)| {
                head_out
                    .par_chunks_mut(QUERY_TILE * d)
                    .enumerate()
                    .for_each(|(tile, rows)| {
                        attend_tile(&inputs, head, tile * QUERY_TILE, rows.len() / d, rows)
                    });
            });
        Ok((CpuStorage::F32(out), Shape::from((1, heads, t, d))))
    }
}

struct Inputs<'a> {
    q: (&'a [f32], View),
    k: (&'a [f32], View),
    v: (&'a [f32], View),
    groups: usize,
}

/// Queries `first..first + len` of `head` into `out` (`len × dim`, row-major).
fn attend_tile(inputs: &Inputs, head: usize, first: usize, len: usize, out: &mut [f32]) {
    let ((qd, q), (kd, k), (vd, v)) = (inputs.q, inputs.k, inputs.v);
    let d = q.dim;
    let kv_head = head / inputs.groups;
    // Query i (absolute index first + r) sees keys 0..=past + first + r.
    let past = k.tokens - q.tokens;
    let visible = |r: usize| past + first + r + 1;
    let keys = visible(len - 1);
    let scale = 1.0 / (d as f32).sqrt();
    let mut scores = vec![0f32; len * KEY_TILE];
    let mut max = vec![f32::NEG_INFINITY; len];
    let mut sum = vec![0f32; len];
    out.fill(0.0);
    let mut k0 = 0;
    while k0 < keys {
        let kt = KEY_TILE.min(keys - k0);
        // scores (len × kt) = scale · Q_tile · K_tileᵀ
        // SAFETY: every pointer, stride and extent below stays inside its slice: the views
        // were checked against the tensors' layouts, rows `first..first + len` < q.tokens and
        // keys `k0..k0 + kt` ≤ k.tokens.
        unsafe {
            gemm(
                len,
                kt,
                d,
                scores.as_mut_ptr(),
                1,
                kt as isize,
                false,
                qd.as_ptr().add(q.at(head, first)),
                1,
                q.token as isize,
                kd.as_ptr().add(k.at(kv_head, k0)),
                k.token as isize,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        for r in 0..len {
            let row = &mut scores[r * kt..(r + 1) * kt];
            let seen = visible(r).saturating_sub(k0).min(kt);
            let (now, hidden) = row.split_at_mut(seen);
            hidden.fill(0.0);
            if now.is_empty() {
                continue;
            }
            let (best, row_sum) = exp_from_max(now, max[r]);
            // exp(old max − new max) rescales what the row has so far (0 on its first keys).
            let rescale = if max[r] == f32::NEG_INFINITY {
                0.0
            } else {
                exp_one(max[r] - best)
            };
            sum[r] = sum[r] * rescale + row_sum;
            max[r] = best;
            if rescale != 1.0 {
                out[r * d..(r + 1) * d]
                    .iter_mut()
                    .for_each(|o| *o *= rescale);
            }
        }
        // out (len × d) += P (len × kt) · V_tile (kt × d)
        // SAFETY: as above; `out` holds len × d values.
        unsafe {
            gemm(
                len,
                d,
                kt,
                out.as_mut_ptr(),
                1,
                d as isize,
                true,
                scores.as_ptr(),
                1,
                kt as isize,
                vd.as_ptr().add(v.at(kv_head, k0)),
                1,
                v.token as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        k0 += kt;
    }
    for (r, row) in out.chunks_mut(d).enumerate() {
        let inv = 1.0 / sum[r];
        row.iter_mut().for_each(|o| *o *= inv);
    }
}

/// One row's softmax numerators over the keys of a tile: m = max(`floor`, every value), each
/// value replaced by exp(value − m); returns m and the sum of the new values. Branch-free with
/// 16 independent lanes for the max and the sum, so all three passes vectorise (a plain fold
/// is a serial chain of dependent adds), with AVX2 and FMA where the processor has them,
/// chosen at run time. `exp` is [`exp_one`]: within 3e-7 relative of `f32::exp`.
pub fn exp_from_max(values: &mut [f32], floor: f32) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the processor has AVX2 and FMA (checked at run time).
        return unsafe { exp_from_max_avx2(values, floor) };
    }
    exp_from_max_lanes(values, floor)
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_from_max_avx2(values: &mut [f32], floor: f32) -> (f32, f32) {
    exp_from_max_lanes(values, floor)
}

const LANES: usize = 16;

#[inline(always)]
fn exp_from_max_lanes(values: &mut [f32], floor: f32) -> (f32, f32) {
    let mut lanes = [floor; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(v);
        }
    }
    let best = chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .copied()
        .fold(floor, f32::max);
    let mut sums = [0f32; LANES];
    let mut chunks = values.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (sum, v) in sums.iter_mut().zip(chunk) {
            *v = exp_one(*v - best);
            *sum += *v;
        }
    }
    let mut total = 0f32;
    for v in chunks.into_remainder() {
        *v = exp_one(*v - best);
        total += *v;
    }
    (best, total + sums.iter().sum::<f32>())
}

/// exp(x) as 2^n · p(r): n = round(x / ln 2), r = x − n ln 2 in [−ln 2 / 2, ln 2 / 2] (ln 2
/// split in two parts so r keeps its bits), p the degree-6 Taylor polynomial (relative error
/// below 1.3e-7 on that range), 2^n put together from its exponent bits.
#[inline(always)]
fn exp_one(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let bits = ((n as i32 + 127) as u32) << 23;
    p * f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_3e_7_of_the_library() {
        let mut worst = 0f32;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let (got, want) = (exp_one(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
            x += 0.013;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        // A row longer than the lanes, with a remainder: the max, the numerators, their sum.
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let want_max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let want: Vec<f32> = row.iter().map(|v| (v - want_max).exp()).collect();
        let (best, total) = exp_from_max(&mut row, f32::NEG_INFINITY);
        assert_eq!(best, want_max);
        for (got, want) in row.iter().zip(&want) {
            assert!((got - want).abs() <= 3e-7 * want, "{got} vs {want}");
        }
        assert!((total - want.iter().sum::<f32>()).abs() < 1e-5);
        // A floor above every value is the max; far-below values give ~0, never NaN.
        let mut low = vec![-200.0f32, 0.0];
        let (best, total) = exp_from_max(&mut low, 1.0);
        assert_eq!(best, 1.0);
        assert!(low[0] >= 0.0 && low[0] < 1e-37 && (low[1] - (-1f32).exp()).abs() < 1e-7);
        assert!((total - (-1f32).exp()).abs() < 1e-7);
    }
}
