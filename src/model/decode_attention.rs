//! The decode step's attention on CUDA with its lengths on the device
//! (kernels/decode_attn.cu): writing the new token's keys and values into a layer's cache
//! buffer, and split-K ("flash-decoding") attention of one query per head over the cache.
//!
//! How many entries a layer's cache holds is not a launch parameter: it is read from a u32
//! `inputs` tensor on the device, `[token, position, len_0, len_1, …]` (see
//! `ResidentInputs` in `model::llama`), so the same launches replay from a CUDA graph for
//! every token. Grids are sized from the buffers' capacity; the kernels skip what lies past
//! the length.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Result, Shape, Storage, Tensor};

use super::cuda_kernels::{cuda_only, dtype_suffix, Kernel};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/decode_attn.ptx"));

/// Threads of `decode_attn_partial_*` (DEC_WARPS warps), and the largest number of query
/// heads per kv head it is instantiated for.
const THREADS: u32 = 128;
const MAX_GROUPS: usize = 8;
/// CTAs the split-K grid aims at: several per SM of an H100/H200 (132 SMs), so that each SM
/// has enough loads in flight to stream the cache at full bandwidth.
const TARGET_CTAS: usize = 1024;

/// Whether the device-resident decode kernels cover this dtype, head dim and grouping.
pub fn supported(dtype: DType, head_dim: usize, heads: usize, kv_heads: usize) -> bool {
    matches!(dtype, DType::BF16 | DType::F16 | DType::F32)
        && matches!(head_dim, 64 | 128)
        && kv_heads > 0
        && heads % kv_heads == 0
        && heads / kv_heads <= MAX_GROUPS
}

/// Writes `new` (1, kv_heads, 1, d), contiguous, into `cache` (1, kv_heads, capacity, d) at
/// entry `inputs[slot]`. The caller guarantees that entry is below the capacity.
pub fn cache_write(cache: &Tensor, new: &Tensor, inputs: &Tensor, slot: usize) -> Result<()> {
    cache.inplace_op3(&new.contiguous()?, inputs, &CacheWrite { slot })
}

/// Attention of `q` (1, heads, 1, d) over the first `inputs[slot] + 1` entries of `k`/`v`
/// (1, kv_heads, capacity, d): the cache with the new token already written. Returns
/// (1, heads, 1, d) in q's dtype.
pub fn decode_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    inputs: &Tensor,
    slot: usize,
) -> Result<Tensor> {
    let (_, heads, t, d) = q.dims4()?;
    if t != 1 {
        candle_core::bail!("decode attention takes one query per head, got {t}");
    }
    let out = q.contiguous()?.apply_op3_no_bwd(
        k,
        v,
        &DecodeAttention {
            inputs: inputs.clone(),
            slot,
        },
    )?;
    out.reshape((1, heads, 1, d))
}

struct CacheWrite {
    slot: usize,
}

impl candle_core::InplaceOp3 for CacheWrite {
    fn name(&self) -> &'static str {
        "sdtp-cache-write"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> Result<()> {
        candle_core::bail!("the cache write kernel runs on CUDA only")
    }

    fn cuda_fwd(
        &self,
        cache: &mut CudaStorage,
        lc: &Layout,
        new: &CudaStorage,
        ln: &Layout,
        inputs: &CudaStorage,
        li: &Layout,
    ) -> Result<()> {
        let dev = cache.device().clone();
        let (_, heads, capacity, d) = lc.shape().dims4()?;
        let (_, new_heads, one, new_d) = ln.shape().dims4()?;
        if !lc.is_contiguous() || !ln.is_contiguous() || (new_heads, one, new_d) != (heads, 1, d) {
            candle_core::bail!("cache write of {:?} into {:?}", ln.shape(), lc.shape());
        }
        let CudaStorageSlice::U32(idx) = &inputs.slice else {
            candle_core::bail!("decode inputs must be u32")
        };
        if self.slot >= li.shape().elem_count() {
            candle_core::bail!("decode inputs have no length at {}", self.slot);
        }
        let idx = idx.slice(li.start_offset()..);
        let suffix = dtype_suffix(cache.dtype(), "cache write")?;
        let kernel = Kernel::load(&dev, PTX, &format!("cache_write_{suffix}"), 0)?;
        let cfg = LaunchConfig {
            grid_dim: ((heads * d).div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let (slot_i, heads_i, cap_i, d_i) =
            (self.slot as i32, heads as i32, capacity as i64, d as i32);
        macro_rules! run {
            ($variant:ident) => {{
                let (CudaStorageSlice::$variant(dst), CudaStorageSlice::$variant(src)) =
                    (&mut cache.slice, &new.slice)
                else {
                    candle_core::bail!("cache write: cache and new entries must share a dtype")
                };
                let mut dst = dst.slice_mut(lc.start_offset()..);
                let src = src.slice(ln.start_offset()..);
                let mut b = kernel.builder();
                b.arg(&mut dst).arg(&src).arg(&idx).arg(&slot_i);
                b.arg(&heads_i).arg(&cap_i).arg(&d_i);
                // SAFETY: matches cache_write_* in kernels/decode_attn.cu; the caller keeps
                // inputs[slot] below the capacity (ResidentDecoder reserves room first).
                unsafe { b.launch(cfg) }.w()?;
            }};
        }
        match cache.dtype() {
            DType::BF16 => run!(BF16),
            DType::F16 => run!(F16),
            _ => run!(F32),
        }
        Ok(())
    }
}

struct DecodeAttention {
    inputs: Tensor,
    slot: usize,
}

/// Keys per split: about [`TARGET_CTAS`] CTAs over the whole capacity, in whole warps' worth
/// of keys (32), at least 64 so that a CTA's fixed cost stays small against its reads.
fn split_chunk(capacity: usize, kv_heads: usize) -> usize {
    (capacity * kv_heads)
        .div_ceil(TARGET_CTAS)
        .next_multiple_of(32)
        .max(64)
}

impl candle_core::CustomOp3 for DecodeAttention {
    fn name(&self) -> &'static str {
        "sdtp-decode-attention"
    }

    cuda_only!(3, "the decode attention kernel");

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        lq: &Layout,
        k: &CudaStorage,
        lk: &Layout,
        v: &CudaStorage,
        lv: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = q.device().clone();
        let (_, heads, _, d) = lq.shape().dims4()?;
        let (_, kv_heads, capacity, kd) = lk.shape().dims4()?;
        if !lk.is_contiguous()
            || !lv.is_contiguous()
            || lk.shape() != lv.shape()
            || kd != d
            || !supported(q.dtype(), d, heads, kv_heads)
            || !lq.is_contiguous()
        {
            candle_core::bail!(
                "decode attention: q {:?} k {:?} v {:?}",
                lq.shape(),
                lk.shape(),
                lv.shape()
            );
        }
        // The lengths, read by the kernels on the device; the read guard lives to the end of
        // the launches.
        let (in_storage, in_layout) = self.inputs.storage_and_layout();
        let Storage::Cuda(in_storage) = &*in_storage else {
            candle_core::bail!("decode inputs must live on the CUDA device")
        };
        let CudaStorageSlice::U32(inputs) = &in_storage.slice else {
            candle_core::bail!("decode inputs must be u32")
        };
        if self.slot >= in_layout.shape().elem_count() || !in_layout.is_contiguous() {
            candle_core::bail!("decode inputs have no length at {}", self.slot);
        }
        let inputs = inputs.slice(in_layout.start_offset()..);
        let groups = heads / kv_heads;
        let chunk = split_chunk(capacity, kv_heads);
        let max_splits = capacity.div_ceil(chunk);
        let suffix = dtype_suffix(q.dtype(), "decode attention")?;
        let partial = Kernel::load(
            &dev,
            PTX,
            &format!("decode_attn_partial_{suffix}_d{d}_g{groups}"),
            0,
        )?;
        let combine = Kernel::load(&dev, PTX, &format!("decode_attn_combine_{suffix}"), 0)?;
        // SAFETY: the combine kernel reads only the splits below the length, each of which
        // the partial kernel wrote.
        let part_ml = unsafe { dev.alloc::<f32>(heads * max_splits * 2)? };
        let part_acc = unsafe { dev.alloc::<f32>(heads * max_splits * d)? };
        let (slot_i, cap_i, chunk_i, splits_i, d_i) = (
            self.slot as i32,
            capacity as i64,
            chunk as i32,
            max_splits as i32,
            d as i32,
        );
        let scale = (1.0 / (d as f64).sqrt() * std::f64::consts::LOG2_E) as f32;
        let partial_cfg = LaunchConfig {
            grid_dim: (kv_heads as u32, max_splits as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let combine_cfg = LaunchConfig {
            grid_dim: (heads as u32, 1, 1),
            block_dim: (d as u32, 1, 1),
            shared_mem_bytes: 0,
        };
        macro_rules! run {
            ($variant:ident, $ty:ty) => {{
                let (
                    CudaStorageSlice::$variant(qs),
                    CudaStorageSlice::$variant(ks),
                    CudaStorageSlice::$variant(vs),
                ) = (&q.slice, &k.slice, &v.slice)
                else {
                    candle_core::bail!("decode attention: q, k and v must share a dtype")
                };
                let (qs, ks, vs) = (
                    qs.slice(lq.start_offset()..),
                    ks.slice(lk.start_offset()..),
                    vs.slice(lv.start_offset()..),
                );
                let mut b = partial.builder();
                b.arg(&qs).arg(&ks).arg(&vs).arg(&inputs).arg(&slot_i);
                b.arg(&cap_i).arg(&chunk_i).arg(&scale);
                b.arg(&part_ml).arg(&part_acc).arg(&splits_i);
                // SAFETY: matches decode_attn_partial_* in kernels/decode_attn.cu; the grid
                // covers the capacity and every read stays below the length, itself at most
                // the capacity.
                unsafe { b.launch(partial_cfg) }.w()?;
                // SAFETY: every element is written by the combine kernel.
                let out = unsafe { dev.alloc::<$ty>(heads * d)? };
                let mut b = combine.builder();
                b.arg(&part_ml).arg(&part_acc).arg(&inputs).arg(&slot_i);
                b.arg(&chunk_i).arg(&splits_i).arg(&d_i).arg(&out);
                // SAFETY: matches decode_attn_combine_*; one thread per output element.
                unsafe { b.launch(combine_cfg) }.w()?;
                CudaStorageSlice::$variant(out)
            }};
        }
        let slice = match q.dtype() {
            DType::BF16 => run!(BF16, half::bf16),
            DType::F16 => run!(F16, half::f16),
            _ => run!(F32, f32),
        };
        Ok((CudaStorage { slice, device: dev }, Shape::from((heads, d))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_the_capacity_with_enough_ctas() {
        // Llama-3-8B at 4K: 8 kv heads.
        let chunk = split_chunk(4096 + 256, 8);
        assert_eq!(chunk % 32, 0);
        assert!((4352usize).div_ceil(chunk) * 8 >= 512);
        // A tiny cache still gets whole chunks of at least 64 keys.
        assert_eq!(split_chunk(10, 3), 64);
    }

    #[test]
    fn support_follows_the_kernels() {
        assert!(supported(DType::BF16, 128, 32, 8));
        assert!(supported(DType::F32, 64, 9, 3));
        assert!(!supported(DType::BF16, 96, 32, 8));
        assert!(!supported(DType::BF16, 128, 32, 2));
    }
}
