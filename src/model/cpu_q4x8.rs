//! q4_0 matrices held in groups of eight rows on the CPU, for the decode step's products.
//!
//! In the file's layout each row is a run of 18-byte blocks (an f16 scale, then 16 bytes of
//! nibbles), so a kernel that multiplies eight rows at once reads eight streams 2–8 KB long,
//! and converts eight scales one by one. Measured on the 2-core development machine
//! (`examples`-style probe over 400 MB of 14336 × 4096 matrices, 2 threads): that kernel
//! streamed 9.5 GB/s where a plain read of the same memory runs at 23 GB/s, and 14 GB/s with
//! the matrix in cache — it was bound neither by memory nor by arithmetic alone, but by
//! the pattern. Regrouped once at load (llama.cpp's `block_q4_0x8` idea: per group of eight
//! rows and block, the eight scales, then the eight rows' nibbles), one sequential stream
//! per task feeds 512-bit instructions that take two rows each, the eight scales convert
//! with one instruction, and a prefetch 16 groups ahead keeps the loads in flight: 17–19
//! GB/s on the same probe. The bytes are the same, moved: the model is not held twice.
//!
//! The arithmetic is `cpu_qmatmul`'s (candle's, in candle's order, lane for lane), so the
//! products are the same to the bit (a test holds it to that); `cpu_dequant` expands the
//! groups for the prefill GEMM with the same bit-exact values as candle's `dequantize`.

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Result, Tensor};
use rayon::prelude::*;

use super::cpu_qmatmul::{Activations, QK};

/// Rows per group.
pub const GROUP: usize = 8;
/// Bytes of one q4_0 block.
const BLOCK: usize = 2 + QK / 2;
/// Bytes of one block of a group: eight f16 scales, then eight runs of 16 nibble bytes.
pub const GROUP_BLOCK: usize = GROUP * BLOCK;
/// Groups per parallel task (64 rows, as `cpu_qmatmul`).
const GROUPS_PER_TASK: usize = 8;
/// How far ahead of the block being multiplied the kernel prefetches: 16 group-blocks.
const PREFETCH_BYTES: usize = 16 * GROUP_BLOCK;

/// A (rows, cols) q4_0 matrix regrouped eight rows at a time.
#[derive(Debug)]
pub struct Q4x8 {
    bytes: Vec<u8>,
    rows: usize,
    cols: usize,
}

/// Whether a (rows, cols) matrix of `dtype` is held regrouped on this CPU: q4_0 matrices that
/// `cpu_qmatmul` would multiply (≥ 4M weights, an AVX-512 VNNI CPU), in whole groups.
pub fn applies(dtype: GgmlDType, rows: usize, cols: usize) -> bool {
    dtype == GgmlDType::Q4_0
        && rows * cols >= super::cpu_qmatmul::MIN_WEIGHTS
        && rows.is_multiple_of(GROUP)
        && cols.is_multiple_of(QK)
        && cols > 0
        && super::cpu_qmatmul::available()
}

impl Q4x8 {
    /// Regroups `bytes`, a (rows, cols) q4_0 matrix in the file's row-major block layout.
    pub fn from_rows(bytes: &[u8], rows: usize, cols: usize) -> Result<Self> {
        let blocks = cols / QK;
        if !rows.is_multiple_of(GROUP)
            || !cols.is_multiple_of(QK)
            || bytes.len() != rows * blocks * BLOCK
        {
            candle_core::bail!(
                "q4_0 regrouping: {} bytes for a ({rows}, {cols}) matrix in groups of {GROUP} rows",
                bytes.len()
            );
        }
        let row_bytes = blocks * BLOCK;
        let mut out = Vec::with_capacity(bytes.len());
        for group in bytes.chunks_exact(GROUP * row_bytes) {
            for b in 0..blocks {
                let block = |r: usize| &group[r * row_bytes + b * BLOCK..][..BLOCK];
                for r in 0..GROUP {
                    out.extend_from_slice(&block(r)[..2]);
                }
                for r in 0..GROUP {
                    out.extend_from_slice(&block(r)[2..]);
                }
            }
        }
        Ok(Self {
            bytes: out,
            rows,
            cols,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The regrouped bytes: group g's blocks are bytes `g · cols/32 · 144 ..`.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn size_in_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// `x · selfᵀ` for `x` of shape (…, cols) on the CPU, one kernel pass per input row
    /// (the decode step and short prefills; `cpu_dequant` takes long ones).
    pub fn products(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let xs = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let k = self.cols;
        if !xs.len().is_multiple_of(k) {
            candle_core::bail!("q4_0 product: input width is not {k}");
        }
        let m = xs.len() / k;
        let acts = Activations::quantize(&xs, k);
        let out = self.multiply(&acts, m);
        let mut dims = x.dims().to_vec();
        dims.pop();
        dims.push(self.rows);
        Tensor::from_vec(out, dims, &Device::Cpu)?.to_dtype(dtype)
    }

    fn multiply(&self, acts: &Activations, m: usize) -> Vec<f32> {
        let (n, blocks) = (self.rows, self.cols / QK);
        let group_bytes = blocks * GROUP_BLOCK;
        let task_rows = GROUPS_PER_TASK * GROUP;
        let tasks: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(task_rows))
            .into_par_iter()
            .map(|task| {
                let start = task * task_rows;
                let rows = task_rows.min(n - start);
                let mut local = vec![0f32; m * rows];
                for g in 0..rows / GROUP {
                    let at = (start / GROUP + g) * group_bytes;
                    let group = &self.bytes[at..at + group_bytes];
                    for i in 0..m {
                        let dots = dot_group(group, acts, i, blocks);
                        local[i * rows + g * GROUP..][..GROUP].copy_from_slice(&dots);
                    }
                }
                (start, local)
            })
            .collect();
        let mut out = vec![0f32; m * n];
        for (start, local) in tasks {
            let rows = local.len() / m.max(1);
            for i in 0..m {
                out[i * n + start..][..rows].copy_from_slice(&local[i * rows..(i + 1) * rows]);
            }
        }
        out
    }
}

/// One group's eight rows against activation row `i`.
fn dot_group(group: &[u8], acts: &Activations, i: usize, blocks: usize) -> [f32; GROUP] {
    assert_eq!(group.len(), blocks * GROUP_BLOCK);
    let qs = &acts.qs[i * blocks * QK..(i + 1) * blocks * QK];
    let d = &acts.d[i * blocks..(i + 1) * blocks];
    let offsets = &acts.offsets[i * blocks * 8..(i + 1) * blocks * 8];
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `applies` checked `available()` before a Q4x8 was built for this CPU, and
        // the slices hold `blocks` blocks each (asserted above and by construction).
        unsafe { x86::dot_group(group, qs, d, offsets, blocks) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (qs, d, offsets);
        unreachable!("Q4x8 is built only where the VNNI kernels are available")
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    use super::{GROUP, GROUP_BLOCK, PREFETCH_BYTES};
    use crate::model::cpu_qmatmul::x86::hsum;
    use crate::model::cpu_qmatmul::QK;

    /// Eight rows' products. Each 512-bit register holds two rows: lanes 0–7 the first's
    /// eight partial sums, 8–15 the second's, exactly the lanes `cpu_qmatmul::x86::dot_q4_0`
    /// keeps per row, updated by the same operations in the same order.
    ///
    /// # Safety
    /// The CPU has AVX-512 F/BW/VL/VNNI/DQ, AVX2, FMA and F16C; `group` holds `blocks`
    /// group-blocks, `qs` 32·blocks values, `d` blocks scales and `offsets` 8·blocks sums.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx2,fma,f16c")]
    pub unsafe fn dot_group(
        group: &[u8],
        qs: &[i8],
        d: &[f32],
        offsets: &[i32],
        blocks: usize,
    ) -> [f32; GROUP] {
        let low = _mm512_set1_epi8(0x0F);
        let zero = _mm512_setzero_si512();
        // Lane selectors that spread row 2p's and row 2p+1's scale over their eight lanes.
        let spread: [__m512i; 4] = std::array::from_fn(|p| {
            let (a, b) = (2 * p as i32, 2 * p as i32 + 1);
            _mm512_setr_epi32(a, a, a, a, a, a, a, a, b, b, b, b, b, b, b, b)
        });
        let mut acc = [_mm512_setzero_ps(); GROUP / 2];
        let base = group.as_ptr();
        for (b, &da) in d.iter().enumerate().take(blocks) {
            let blk = unsafe { base.add(b * GROUP_BLOCK) };
            // Past the group's end this reads ahead into the next group (or nothing: a
            // prefetch does not fault), hence the wrapping address.
            let ahead = blk.wrapping_add(PREFETCH_BYTES) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(ahead);
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64));
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(128));
            let a = unsafe { _mm256_loadu_si256(qs.as_ptr().add(b * QK) as *const __m256i) };
            let a = _mm512_broadcast_i64x4(a);
            let off = unsafe { _mm256_loadu_si256(offsets.as_ptr().add(b * 8) as *const __m256i) };
            let off = _mm512_broadcast_i64x4(off);
            // The eight scales at once, times the activations' (as the scalar dw · da).
            let dw = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(blk as *const __m128i) });
            let scales = _mm512_castps256_ps512(_mm256_mul_ps(dw, _mm256_set1_ps(da)));
            let nibbles = unsafe {
                [
                    _mm512_loadu_si512(blk.add(16) as *const _),
                    _mm512_loadu_si512(blk.add(80) as *const _),
                ]
            };
            for (p, acc) in acc.iter_mut().enumerate() {
                let src = nibbles[p / 2];
                // [row, row, next row, next row] in 128-bit lanes ...
                let x = if p % 2 == 0 {
                    _mm512_shuffle_i64x2::<0b01_01_00_00>(src, src)
                } else {
                    _mm512_shuffle_i64x2::<0b11_11_10_10>(src, src)
                };
                // ... then low nibbles in lanes 0 and 2, high ones in 1 and 3: each row's 32
                // values in order (candle's `bytes_from_nibbles_32`), unsigned.
                let w = _mm512_and_si512(_mm512_mask_srli_epi16(x, 0xFF00_FF00, x, 4), low);
                let sums = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, w, a), off);
                let scale = _mm512_permutexvar_ps(spread[p], scales);
                *acc = _mm512_fmadd_ps(scale, _mm512_cvtepi32_ps(sums), *acc);
            }
        }
        let mut out = [0f32; GROUP];
        for (p, acc) in acc.iter().enumerate() {
            out[2 * p] = hsum(_mm512_castps512_ps256(*acc));
            out[2 * p + 1] = hsum(_mm256_castpd_ps(_mm512_extractf64x4_pd(
                _mm512_castps_pd(*acc),
                1,
            )));
        }
        out
    }

    /// A group's blocks expanded to f32, eight rows of `cols` values row-major at `out`:
    /// `(nibble − 8) as f32 · d` as candle's `dequantize` computes it.
    ///
    /// # Safety
    /// AVX-512 F/BW, AVX2 and F16C; `group` holds cols/32 group-blocks, `out` room for 8·cols.
    #[target_feature(enable = "avx512f,avx512bw,avx2,f16c")]
    pub unsafe fn expand_group(group: &[u8], cols: usize, out: *mut f32) {
        for (b, blk) in group.chunks_exact(GROUP_BLOCK).enumerate() {
            let p = blk.as_ptr();
            for r in 0..GROUP {
                // SAFETY: row r's scale and nibbles lie in this group-block; `out` has room.
                unsafe {
                    crate::model::cpu_qmatmul::x86::q4_0_values(
                        p.add(2 * r),
                        p.add(16 + 16 * r),
                        out.add(r * cols + b * QK),
                    )
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::QTensor;

    use crate::model::cpu_qmatmul::tests::values;

    #[test]
    fn products_equal_the_row_layouts_to_the_bit() {
        if !super::super::cpu_qmatmul::available() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        // 72 rows: one full task of 64 and a short one of a single group.
        let (n, k) = (72, 512);
        let w = Tensor::from_vec(values(n * k, 1), (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        let grouped = Q4x8::from_rows(&q.data().unwrap(), n, k).unwrap();
        assert_eq!(grouped.size_in_bytes(), q.storage_size_in_bytes());
        for m in [1, 3] {
            let x = Tensor::from_vec(values(m * k, 7), (1, m, k), &Device::Cpu).unwrap();
            let ours = grouped.products(&x).unwrap();
            let theirs = super::super::cpu_qmatmul::multiply(&x, &q)
                .unwrap()
                .expect("q4_0 on this CPU");
            assert_eq!(ours.dims(), &[1, m, n]);
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (a, b) = (flat(&ours), flat(&theirs));
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "m = {m}: the grouped products differ"
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn expansion_equals_candles_to_the_bit() {
        if !super::super::cpu_qmatmul::available() {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        let (n, k) = (16, 256);
        let w = Tensor::from_vec(values(n * k, 3), (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q4_0).unwrap();
        let theirs = q.dequantize(&Device::Cpu).unwrap();
        let theirs = theirs.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let grouped = Q4x8::from_rows(&q.data().unwrap(), n, k).unwrap();
        let mut ours = vec![f32::NAN; n * k];
        let group_bytes = k / QK * GROUP_BLOCK;
        for (g, group) in grouped.bytes().chunks_exact(group_bytes).enumerate() {
            // SAFETY: room for the group's 8 rows; the CPU has the kernels (checked above).
            unsafe { x86::expand_group(group, k, ours.as_mut_ptr().add(g * GROUP * k)) };
        }
        assert!(ours
            .iter()
            .zip(&theirs)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }

    #[test]
    fn misfit_shapes_are_refused() {
        assert!(Q4x8::from_rows(&[0u8; 18 * 7], 7, 32).is_err());
        assert!(Q4x8::from_rows(&[0u8; 18 * 8], 8, 64).is_err());
        assert!(!applies(GgmlDType::Q8_0, 4096, 4096));
        assert!(!applies(GgmlDType::Q4_0, 4100, 4096));
        assert!(!applies(GgmlDType::Q4_0, 64, 4096));
    }
}
