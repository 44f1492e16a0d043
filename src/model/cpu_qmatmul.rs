//! The CPU product of f32 rows with q4_0 or q8_0 blocks (llama.cpp's most common GGUF types)
//! on AVX-512 VNNI, for the decode step and prefills short enough to stay on the blocks.
//!
//! candle's kernel for these types (`vec_dot_q4_0_q8_0`, `vec_dot_q8_0_q8_0`) is AVX2: per
//! block of 32 values it widens the bytes to 16-bit pairs (`maddubs` + `madd`), converts both
//! f16 scales through a function call, and a 4-row call runs four separate loops that each
//! reload the activations. An 8B q4_0 model then decoded at half llama.cpp's speed on the
//! same file. Here one `vpdpbusd` takes the 32 bytes of a block straight to the same eight
//! 32-bit lane sums, the scales convert in registers, and four weight rows share every
//! activation load.
//!
//! The arithmetic is candle's, in candle's order, so the result is the same to the bit (a test
//! holds it to that): the activations are quantised to q8_0 as `BlockQ8_0::from_float` does,
//! every lane sum is exact (no 16-bit saturation can occur in either kernel for these types),
//! each block adds `d_w·d_a · lanes` into eight f32 lanes with one FMA, and the lanes are summed
//! as candle's `hsum_float_8` sums them.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

/// Values per q4_0 / q8_0 block.
pub(super) const QK: usize = 32;
/// Weight rows per parallel task: 64 rows of an 8B model's 4096-wide matrix are 147 KB of
/// q4_0, which a short prefill's rows reuse from L2.
const ROWS_PER_TASK: usize = 64;
/// Weight rows multiplied together, sharing each activation load; more rows in flight keep
/// more loads outstanding.
const GROUP: usize = 8;

/// Whether this CPU runs the VNNI kernels (checked once). `SDTP_CANDLE_QMATMUL=1` keeps
/// candle's kernels, for comparison.
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var("SDTP_CANDLE_QMATMUL").is_ok_and(|v| v == "1") {
            return false;
        }
        detect()
    })
}

#[cfg(target_arch = "x86_64")]
fn detect() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512vnni")
        && std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> bool {
    false
}

/// Matrices of fewer weights stay with candle: its barrier pool costs less per call than the
/// thread pool here, and a small matrix's product is short enough for that to decide
/// (SmolLM2, 576 wide: decode 38–42 tok/s here against 43–48 with candle; an 8B model's
/// smallest matrix, k/v at 1024 × 4096, has 4M).
pub(super) const MIN_WEIGHTS: usize = 1 << 22;

/// Whether [`matmul`] multiplies `q` on this CPU.
pub fn applies_to(q: &QTensor) -> bool {
    matches!(q.dtype(), GgmlDType::Q4_0 | GgmlDType::Q8_0)
        && q.shape().elem_count() >= MIN_WEIGHTS
        && available()
}

/// `x · qᵀ` for f32 `x` of shape (…, k) and a CPU (n, k) q4_0 or q8_0 matrix; `None` where
/// this kernel does not apply (another type, a small matrix, another device or dtype, or a CPU
/// without VNNI), so the
/// caller takes candle's path.
pub fn matmul(x: &Tensor, q: &QTensor) -> Result<Option<Tensor>> {
    if !applies_to(q) {
        return Ok(None);
    }
    multiply(x, q)
}

/// [`matmul`] without the size gate (the kernel itself, for any q4_0/q8_0 matrix).
pub(super) fn multiply(x: &Tensor, q: &QTensor) -> Result<Option<Tensor>> {
    let Some((n, k)) = operands(x, q)? else {
        return Ok(None);
    };
    let kind = match q.dtype() {
        GgmlDType::Q4_0 => Kind::Q4_0,
        _ => Kind::Q8_0,
    };
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let m = xs.len() / k;
    let acts = Activations::quantize(&xs, k);
    let weights = q.data()?;
    let out = products(kind, &weights, n, k, &acts, m);
    // x.dim(Minus1) succeeded above, so x has a last dimension to replace.
    let mut dims = x.dims().to_vec();
    dims.pop();
    dims.push(n);
    Tensor::from_vec(out, dims, &Device::Cpu).map(Some)
}

/// The (n, k) of `q` where this CPU's AVX-512 kernels (this module's and `cpu_dequant`'s) can
/// multiply f32 `x` by it: a q4_0/q8_0 matrix, `x` on the CPU in f32 with k columns, k a whole
/// number of blocks. `None` sends the caller to candle's path.
pub(super) fn operands(x: &Tensor, q: &QTensor) -> Result<Option<(usize, usize)>> {
    if !matches!(q.dtype(), GgmlDType::Q4_0 | GgmlDType::Q8_0)
        || !x.device().is_cpu()
        || x.dtype() != DType::F32
        || !available()
    {
        return Ok(None);
    }
    let (n, k) = q.shape().dims2()?;
    if k == 0 || !k.is_multiple_of(QK) || x.dim(candle_core::D::Minus1)? != k {
        return Ok(None);
    }
    Ok(Some((n, k)))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Q4_0,
    Q8_0,
}

impl Kind {
    fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => GgmlDType::Q4_0.type_size(),
            Self::Q8_0 => GgmlDType::Q8_0.type_size(),
        }
    }
}

/// The rows of `x` quantised to q8_0, laid out for the kernels (this module's and
/// `cpu_q4x8`'s).
pub(super) struct Activations {
    /// Quantised values, row-major (m × k).
    pub(super) qs: Vec<i8>,
    /// Each block's scale, already rounded through f16 as candle stores it (m × k/32).
    pub(super) d: Vec<f32>,
    /// 8 × the sum of each group of four values (m × k/32 × 8): the q4_0 kernel multiplies
    /// the unsigned nibbles and subtracts this for their offset of 8.
    pub(super) offsets: Vec<i32>,
}

impl Activations {
    /// candle's `BlockQ8_0::from_float`, value for value.
    pub(super) fn quantize(xs: &[f32], k: usize) -> Self {
        let blocks = xs.len() / QK;
        let mut qs = vec![0i8; xs.len()];
        let mut d = Vec::with_capacity(blocks);
        let mut offsets = Vec::with_capacity(blocks * 8);
        debug_assert!(xs.len().is_multiple_of(k));
        for (block, out) in xs.chunks_exact(QK).zip(qs.chunks_exact_mut(QK)) {
            let amax = block.iter().fold(0f32, |a, x| a.max(x.abs()));
            let scale = amax / ((1 << 7) - 1) as f32;
            let inverse = if scale != 0f32 { 1. / scale } else { 0. };
            d.push(half::f16::from_f32(scale).to_f32());
            for (q, &x) in out.iter_mut().zip(block) {
                *q = f32::round(x * inverse) as i8;
            }
            for group in out.chunks_exact(4) {
                offsets.push(8 * group.iter().map(|&q| q as i32).sum::<i32>());
            }
        }
        Self { qs, d, offsets }
    }
}

/// All m × n products, weight rows split over the thread pool.
fn products(
    kind: Kind,
    weights: &[u8],
    n: usize,
    k: usize,
    acts: &Activations,
    m: usize,
) -> Vec<f32> {
    let blocks = k / QK;
    let row_bytes = blocks * kind.block_bytes();
    let tasks: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|task| {
            let start = task * ROWS_PER_TASK;
            let rows = ROWS_PER_TASK.min(n - start);
            let mut local = vec![0f32; m * rows];
            for i in 0..m {
                for group in (0..rows).step_by(GROUP) {
                    // A group of fewer than GROUP rows repeats its last row and drops the extra
                    // results, so that the kernel always runs GROUP.
                    let row = |r: usize| {
                        let at = (start + (group + r).min(rows - 1)) * row_bytes;
                        &weights[at..at + row_bytes]
                    };
                    let dots = dot_rows(kind, std::array::from_fn(row), acts, i, blocks);
                    let take = GROUP.min(rows - group);
                    local[i * rows + group..i * rows + group + take].copy_from_slice(&dots[..take]);
                }
            }
            (start, local)
        })
        .collect();
    let mut out = vec![0f32; m * n];
    for (start, local) in tasks {
        let rows = local.len() / m.max(1);
        for i in 0..m {
            out[i * n + start..i * n + start + rows]
                .copy_from_slice(&local[i * rows..(i + 1) * rows]);
        }
    }
    out
}

/// `GROUP` weight rows against activation row `i`.
fn dot_rows(
    kind: Kind,
    rows: [&[u8]; GROUP],
    acts: &Activations,
    i: usize,
    blocks: usize,
) -> [f32; GROUP] {
    let qs = &acts.qs[i * blocks * QK..(i + 1) * blocks * QK];
    let d = &acts.d[i * blocks..(i + 1) * blocks];
    let offsets = &acts.offsets[i * blocks * 8..(i + 1) * blocks * 8];
    for row in rows {
        assert_eq!(row.len(), blocks * kind.block_bytes());
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `available()` checked every feature the kernels enable before `matmul` came
        // here, and the slices above hold `blocks` whole blocks each (asserted).
        unsafe {
            match kind {
                Kind::Q4_0 => x86::dot_q4_0(rows, qs, d, offsets, blocks),
                Kind::Q8_0 => x86::dot_q8_0(rows, qs, d, blocks),
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (qs, d, offsets);
        unreachable!("matmul returns None where the VNNI kernels are not available")
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::QK;

    /// An f16 scale, read unaligned from a block, as f32 (F16C, exact).
    #[inline]
    #[target_feature(enable = "f16c,avx2")]
    pub(in crate::model) unsafe fn scale(block: *const u8) -> f32 {
        let bits = unsafe { std::ptr::read_unaligned(block as *const u16) };
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }

    /// candle's `hsum_float_8`, operation for operation.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(in crate::model) fn hsum(x: __m256) -> f32 {
        let res = _mm256_extractf128_ps(x, 1);
        let res = _mm_add_ps(res, _mm256_castps256_ps128(x));
        let res = _mm_add_ps(res, _mm_movehl_ps(res, res));
        let res = _mm_add_ss(res, _mm_movehdup_ps(res));
        _mm_cvtss_f32(res)
    }

    /// One q4_0 block's 32 values at `out`: values 0..15 are the low nibbles of the 16 bytes
    /// at `nibbles`, 16..31 the high ones, each minus 8, times the f16 scale at `scale_at`
    /// (`cpu_q4x8` keeps the two apart); `cpu_dequant` and `cpu_q4x8` expand with it.
    ///
    /// # Safety
    /// AVX-512 F/BW, AVX2 and F16C; 2 bytes at `scale_at`, 16 at `nibbles`, room for 32 at `out`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
    pub(in crate::model) unsafe fn q4_0_values(
        scale_at: *const u8,
        nibbles: *const u8,
        out: *mut f32,
    ) {
        let low = _mm_set1_epi8(0x0F);
        let eight = _mm512_set1_epi32(8);
        let d = _mm512_set1_ps(unsafe { scale(scale_at) });
        let v = unsafe { _mm_loadu_si128(nibbles as *const __m128i) };
        let lo = _mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_and_si128(v, low)), eight);
        let hi = _mm512_sub_epi32(
            _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), low)),
            eight,
        );
        unsafe {
            _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d));
            _mm512_storeu_ps(out.add(16), _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d));
        }
    }

    /// # Safety
    /// The CPU has AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; each row holds `blocks` q4_0
    /// blocks, `qs` 32·blocks values, `d` blocks scales and `offsets` 8·blocks sums.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_q4_0<const R: usize>(
        rows: [&[u8]; R],
        qs: &[i8],
        d: &[f32],
        offsets: &[i32],
        blocks: usize,
    ) -> [f32; R] {
        const BLOCK: usize = 2 + QK / 2;
        let low = _mm_set1_epi8(0x0F);
        let zero = _mm256_setzero_si256();
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, &da) in d.iter().enumerate().take(blocks) {
            let a = unsafe { _mm256_loadu_si256(qs.as_ptr().add(b * QK) as *const __m256i) };
            let off = unsafe { _mm256_loadu_si256(offsets.as_ptr().add(b * 8) as *const __m256i) };
            for r in 0..R {
                let block = unsafe { rows[r].as_ptr().add(b * BLOCK) };
                let dw = unsafe { scale(block) };
                let v = unsafe { _mm_loadu_si128(block.add(2) as *const __m128i) };
                // Values 0..15 are the low nibbles, 16..31 the high ones (candle's
                // `bytes_from_nibbles_32`), unsigned here: the offset of 8 comes off below.
                let lo = _mm_and_si128(v, low);
                let hi = _mm_and_si128(_mm_srli_epi16(v, 4), low);
                let w = _mm256_set_m128i(hi, lo);
                let sums = _mm256_sub_epi32(_mm256_dpbusd_epi32(zero, w, a), off);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da), _mm256_cvtepi32_ps(sums), acc[r]);
            }
        }
        let mut out = [0f32; R];
        for r in 0..R {
            out[r] = hsum(acc[r]);
        }
        out
    }

    /// # Safety
    /// As [`dot_q4_0`], with q8_0 rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub unsafe fn dot_q8_0<const R: usize>(
        rows: [&[u8]; R],
        qs: &[i8],
        d: &[f32],
        blocks: usize,
    ) -> [f32; R] {
        const BLOCK: usize = 2 + QK;
        let zero = _mm256_setzero_si256();
        let mut acc = [_mm256_setzero_ps(); R];
        for (b, &da) in d.iter().enumerate().take(blocks) {
            let a = unsafe { _mm256_loadu_si256(qs.as_ptr().add(b * QK) as *const __m256i) };
            for r in 0..R {
                let block = unsafe { rows[r].as_ptr().add(b * BLOCK) };
                let dw = unsafe { scale(block) };
                let w = unsafe { _mm256_loadu_si256(block.add(2) as *const __m256i) };
                // |w| · (a · sign w): unsigned × signed, as candle's `mul_sum_i8_pairs_float`.
                let sums =
                    _mm256_dpbusd_epi32(zero, _mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * da), _mm256_cvtepi32_ps(sums), acc[r]);
            }
        }
        let mut out = [0f32; R];
        for r in 0..R {
            out[r] = hsum(acc[r]);
        }
        out
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use candle_core::quantized::QMatMul;
    use candle_core::Module;

    /// Random-ish f32 values with outliers, as activations have (`cpu_q4x8`'s tests too).
    pub(in crate::model) fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let h = (i as u32)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(seed.wrapping_mul(97));
                let v = ((h >> 8) as f32 / (1u32 << 24) as f32) - 0.5;
                if h.is_multiple_of(97) {
                    v * 40.0
                } else {
                    v
                }
            })
            .collect()
    }

    #[test]
    fn products_equal_candles_to_the_bit() {
        if !available() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0] {
            // Output counts that are not multiples of 16: candle multiplies q8_0 matrices of 16k
            // rows and 256k columns with its tiled kernel (its own input rounding), which sdtp
            // keeps for them (`Proj`'s `tiled`).
            for (m, n, k) in [
                (1, 7, 64),
                (1, 130, 576),
                (3, 63, 1536),
                (31, 9, 96),
                (2, 301, 4096),
            ] {
                let w = Tensor::from_vec(values(n * k, 1), (n, k), &Device::Cpu).unwrap();
                let q = QTensor::quantize(&w, dtype).unwrap();
                let x = Tensor::from_vec(values(m * k, 2), (1, m, k), &Device::Cpu).unwrap();
                let ours = multiply(&x, &q).unwrap().expect("kernel applies");
                let theirs = QMatMul::from_qtensor(q).unwrap().forward(&x).unwrap();
                assert_eq!(ours.dims(), theirs.dims());
                let (a, b) = (
                    ours.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                let same = a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "{dtype:?} ({m}, {n}, {k}): differs from candle");
            }
        }
    }

    #[test]
    fn other_types_and_dtypes_are_left_to_candle() {
        let w = Tensor::from_vec(values(8 * 256, 3), (8, 256), &Device::Cpu).unwrap();
        let x = Tensor::from_vec(values(256, 4), (1, 256), &Device::Cpu).unwrap();
        let q4k = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
        assert!(multiply(&x, &q4k).unwrap().is_none());
        let q8 = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        let x64 = x.to_dtype(DType::F64).unwrap();
        assert!(multiply(&x64, &q8).unwrap().is_none());
        // Small matrices stay with candle.
        assert!(!applies_to(&q8));
        assert!(matmul(&x, &q8).unwrap().is_none());
    }
}
