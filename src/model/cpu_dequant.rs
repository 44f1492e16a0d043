//! q4_0 and q8_0 weight rows expanded to f32 on AVX-512, over the thread pool, for the prefill
//! GEMM on an expanded slab (`proj::expanded_matmul`).
//!
//! candle's `dequantize` is a scalar loop on one thread into a freshly zeroed buffer: an 8B q4_0
//! matrix of 4096 × 4096 takes ~46 ms (360 M weights/s on the 2-core development machine), so
//! expanding a 7–8B model's matrices cost ~20–34 s a prefill, a quarter of a 1024-token prefill.
//! Each value here is `(q − offset) as f32 · d` as candle computes it: the product of an integer
//! of at most 8 bits and an f16 scale is exact in f32, so the result is the same to the bit
//! (a test holds it to that).

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Result, Tensor};
use gemm::{gemm, Parallelism};
use rayon::prelude::*;

/// Values per q4_0 / q8_0 block.
const QK: usize = 32;
/// Bytes of f32 weight rows one task expands and multiplies at a time: small enough to stay in
/// the core's cache while the GEMM reads it, large enough that the input rows, which the GEMM
/// packs again for each slab, are packed rarely (measured in `benches/quantized.rs`).
const SLAB_BYTES: usize = 2 << 20;
/// The fewest weight rows in a slab: a slab of fewer leaves the GEMM's output tiles short.
const SLAB_MIN_ROWS: usize = 64;

/// `x · qᵀ` for f32 `x` of shape (…, k) and a CPU (n, k) q4_0 or q8_0 matrix, by GEMM on
/// expanded slabs of weight rows: the slabs are split over the thread pool, and each task
/// expands its slab into a buffer it keeps and multiplies it on one thread, writing its columns
/// of the output in place. One hand-off per matrix (candle's GEMM wakes the pool for every
/// slab: 12% of an 8B prefill on a 2-core VM went to waking threads), no allocation per slab,
/// no concatenation. `None` where it does not apply (another type, device or dtype, or a CPU
/// without the kernels, or a matrix of fewer weights than `cpu_qmatmul` takes: candle's
/// expansion and GEMM measure the same or faster on SmolLM2's small matrices), so the caller
/// expands with candle.
pub fn matmul(x: &Tensor, q: &QTensor) -> Result<Option<Tensor>> {
    if !super::cpu_qmatmul::applies_to(q) {
        return Ok(None);
    }
    multiply(x, q)
}

/// [`matmul`] without the size gate.
fn multiply(x: &Tensor, q: &QTensor) -> Result<Option<Tensor>> {
    let Some((n, k)) = super::cpu_qmatmul::operands(x, q)? else {
        return Ok(None);
    };
    let dtype = q.dtype();
    let bytes = q.data()?;
    let row_bytes = k / QK * dtype.type_size();
    slab_gemm(x, n, k, &bytes, row_bytes, |blocks, out| {
        // SAFETY: `out` has room for the slab's rows (32 values per block); `operands`
        // checked `available()`.
        unsafe { expand(dtype, blocks, out) }
    })
    .map(Some)
}

/// `x · qᵀ` for f32 `x` of shape (…, k) on the CPU and a q4_0 matrix held in groups of eight
/// rows (`cpu_q4x8`): the same slab GEMM, each slab expanded group by group.
pub fn matmul_grouped(x: &Tensor, q: &super::cpu_q4x8::Q4x8) -> Result<Tensor> {
    let (n, k) = (q.rows(), q.cols());
    if x.dim(candle_core::D::Minus1)? != k {
        candle_core::bail!("q4_0 product: input width is not {k}");
    }
    let dtype = x.dtype();
    let x = x.to_dtype(candle_core::DType::F32)?.contiguous()?;
    let row_bytes = k / QK * GgmlDType::Q4_0.type_size();
    let group_bytes = super::cpu_q4x8::GROUP * row_bytes;
    let y = slab_gemm(&x, n, k, q.bytes(), row_bytes, |blocks, out| {
        for (g, group) in blocks.chunks_exact(group_bytes).enumerate() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `out` has room for the slab's rows, a whole number of groups (the slab
            // height is a multiple of 8 and so is n); a Q4x8 exists only where
            // `cpu_qmatmul::available()` holds.
            unsafe {
                super::cpu_q4x8::x86::expand_group(
                    group,
                    k,
                    out.add(g * super::cpu_q4x8::GROUP * k),
                )
            };
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = (g, group, out);
                unreachable!("Q4x8 is built only where the VNNI kernels are available")
            }
        }
    })?;
    y.to_dtype(dtype)
}

/// The slab GEMM both layouts share: slabs of weight rows split over the thread pool, each
/// expanded by `expand(bytes of its rows, out)` into the task's buffer and multiplied
/// into its columns of the output. Slabs are a multiple of 8 rows high.
fn slab_gemm(
    x: &Tensor,
    n: usize,
    k: usize,
    bytes: &[u8],
    row_bytes: usize,
    expand: impl Fn(&[u8], *mut f32) + Sync,
) -> Result<Tensor> {
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let m = xs.len() / k;
    // At least one slab per thread, so that a small matrix (SmolLM2's 576 rows) keeps both cores.
    let per_thread = n.div_ceil(rayon::current_num_threads().max(1));
    let slab_rows = (SLAB_BYTES / (4 * k)).min(per_thread).max(SLAB_MIN_ROWS) / 8 * 8;
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let dst = SharedOut(out.spare_capacity_mut().as_mut_ptr() as *mut f32);
    (0..n.div_ceil(slab_rows)).into_par_iter().for_each(|slab| {
        let rows = slab * slab_rows..n.min((slab + 1) * slab_rows);
        let blocks = &bytes[rows.start * row_bytes..rows.end * row_bytes];
        SLAB.with_borrow_mut(|w| {
            w.clear();
            w.reserve(rows.len() * k);
            expand(blocks, w.as_mut_ptr());
            // SAFETY: `expand` wrote every one of the slab's values.
            unsafe { w.set_len(rows.len() * k) };
            // out[:, rows] = x · w_slabᵀ. SAFETY: x is m × k row-major, the slab r × k
            // row-major (read as its transpose, k × r), and the task writes only columns
            // `rows` of the m × n row-major output, which no other task writes.
            unsafe {
                gemm(
                    m,
                    rows.len(),
                    k,
                    dst.at(rows.start),
                    1,
                    n as isize,
                    false,
                    xs.as_ptr(),
                    1,
                    k as isize,
                    w.as_ptr(),
                    k as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    Parallelism::None,
                );
            }
        });
    });
    // SAFETY: the slabs cover the n columns, and each task's GEMM wrote its columns of all m
    // rows (beta · product with read_dst false overwrites).
    unsafe { out.set_len(m * n) };
    let mut dims = x.dims().to_vec();
    dims.pop();
    dims.push(n);
    Tensor::from_vec(out, dims, &Device::Cpu)
}

std::thread_local! {
    /// Each pool thread's expanded slab, kept between matrices so that it is allocated once.
    static SLAB: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The output buffer, written by the tasks at disjoint columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: the tasks write disjoint elements (their own columns) and the buffer outlives them.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
impl SharedOut {
    fn at(self, column: usize) -> *mut f32 {
        self.0.wrapping_add(column)
    }
}

/// The q4_0 / q8_0 `blocks` as f32 values at `out`.
///
/// # Safety
/// `out` has room for 32 values per block, and `cpu_qmatmul::available()` holds.
unsafe fn expand(dtype: GgmlDType, blocks: &[u8], out: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as this function's.
    unsafe {
        match dtype {
            GgmlDType::Q4_0 => x86::expand_q4_0(blocks, out),
            _ => x86::expand_q8_0(blocks, out),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (dtype, blocks, out);
        unreachable!("available() is false off x86_64")
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::QK;

    /// The f16 scale at the head of a block as a broadcast f32 (F16C, exact).
    #[inline]
    #[target_feature(enable = "avx512f,f16c,avx2")]
    unsafe fn scale(block: *const u8) -> __m512 {
        _mm512_set1_ps(unsafe { crate::model::cpu_qmatmul::x86::scale(block) })
    }

    /// # Safety
    /// AVX-512 F/BW, AVX2 and F16C; `out` has room for 32 values per 18-byte block of `blocks`.
    #[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
    pub unsafe fn expand_q4_0(blocks: &[u8], out: *mut f32) {
        const BLOCK: usize = 2 + QK / 2;
        for (b, block) in blocks.chunks_exact(BLOCK).enumerate() {
            let p = block.as_ptr();
            // SAFETY: the block holds its scale and 16 nibble bytes; `out` has room.
            unsafe { crate::model::cpu_qmatmul::x86::q4_0_values(p, p.add(2), out.add(b * QK)) };
        }
    }

    /// # Safety
    /// As [`expand_q4_0`], with 34-byte q8_0 blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
    pub unsafe fn expand_q8_0(blocks: &[u8], out: *mut f32) {
        const BLOCK: usize = 2 + QK;
        for (b, block) in blocks.chunks_exact(BLOCK).enumerate() {
            let p = block.as_ptr();
            let d = unsafe { scale(p) };
            unsafe {
                let lo = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(2) as *const __m128i));
                let hi = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(18) as *const __m128i));
                let o = out.add(b * QK);
                _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d));
                _mm512_storeu_ps(o.add(16), _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32 / (1 << 24) as f32 - 0.5)
            .collect()
    }

    #[test]
    fn expansion_equals_candles_to_the_bit() {
        if !super::super::cpu_qmatmul::available() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        let (n, k) = (37, 256);
        let w = Tensor::from_vec(values(n * k), (n, k), &Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0] {
            let q = QTensor::quantize(&w, dtype).unwrap();
            let theirs = q.dequantize(&Device::Cpu).unwrap();
            let theirs = theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let mut ours = vec![f32::NAN; n * k];
            // SAFETY: room for every value; the CPU has the kernels (checked above).
            unsafe { expand(dtype, &q.data().unwrap(), ours.as_mut_ptr()) };
            assert!(
                ours.iter()
                    .zip(&theirs)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{dtype:?}: the expansion differs from candle's"
            );
        }
    }

    #[test]
    fn products_match_candles_expanded_matmul() {
        if !super::super::cpu_qmatmul::available() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        // Widths that leave a short last slab (k = 8192: 64 rows a slab).
        for (m, n, k) in [(3, 37, 256), (70, 150, 8192)] {
            let w = Tensor::from_vec(values(n * k), (n, k), &Device::Cpu).unwrap();
            let x = Tensor::from_vec(values(m * k), (1, m, k), &Device::Cpu).unwrap();
            for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0] {
                let q = QTensor::quantize(&w, dtype).unwrap();
                let ours = multiply(&x, &q).unwrap().expect("applies");
                let dense = q.dequantize(&Device::Cpu).unwrap();
                let theirs = x.broadcast_matmul(&dense.t().unwrap()).unwrap();
                assert_eq!(ours.dims(), theirs.dims());
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let (a, b) = (flat(&ours), flat(&theirs));
                let worst = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                let scale = b.iter().map(|y| y.abs()).fold(0f32, f32::max);
                assert!(
                    worst <= 1e-5 * scale,
                    "{dtype:?} ({m}, {n}, {k}): off by {worst}"
                );
            }
        }
        // The grouped layout gives the row layout's products to the bit (same values, same
        // slabs), also with a short last slab.
        let (m, n, k) = (40, 136, 8192);
        let w = Tensor::from_vec(values(n * k), (n, k), &Device::Cpu).unwrap();
        let x = Tensor::from_vec(values(m * k), (1, m, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        let grouped = super::super::cpu_q4x8::Q4x8::from_rows(&q.data().unwrap(), n, k).unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let rows = flat(&multiply(&x, &q).unwrap().expect("applies"));
        let groups = flat(&matmul_grouped(&x, &grouped).unwrap());
        assert!(rows
            .iter()
            .zip(&groups)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        let w = Tensor::from_vec(values(8 * 256), (8, 256), &Device::Cpu).unwrap();
        let q4k = QTensor::quantize(&w, GgmlDType::Q4K).unwrap();
        let x = Tensor::from_vec(values(256), (1, 256), &Device::Cpu).unwrap();
        assert!(multiply(&x, &q4k).unwrap().is_none());
        // Small matrices stay with candle.
        let q8 = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        assert!(matmul(&x, &q8).unwrap().is_none());
    }
}
