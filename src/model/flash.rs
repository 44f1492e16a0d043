//! Fused causal attention on CUDA (kernels/flash_attn.cu, compiled to PTX by build.rs): tiled,
//! online softmax, tensor cores, no n×n scores in memory. Used for bf16/f16 with head dims 64
//! and 128; anything else takes the blocked path in `attention.rs`.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Result, Shape, Tensor};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/flash_attn.ptx"));
const BLOCK_M: usize = 64;

/// Attention of q (1, heads, t, d) over k/v (1, kv_heads, n, d) (the t queries are the last t
/// keys), or `None` when the fused kernel does not cover these inputs.
pub fn try_flash_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<Tensor>> {
    let supported = q.device().is_cuda()
        && matches!(q.dtype(), DType::BF16 | DType::F16)
        && matches!(q.dim(3)?, 64 | 128)
        && rows_contiguous(k)
        && rows_contiguous(v);
    if !supported {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let (_, heads, t, d) = q.dims4()?;
    let out = q.apply_op3_no_bwd(k, v, &FlashAttention)?;
    // The kernel writes (t, heads, d); hand back the (1, heads, t, d) view callers expect.
    Ok(Some(out.reshape((1, t, heads, d))?.transpose(1, 2)?))
}

/// Last dim contiguous, rows packed within a head, 16-byte aligned start: what the kernel's
/// vector loads need. KV-cache views satisfy it (their head stride has spare capacity).
fn rows_contiguous(x: &Tensor) -> bool {
    let layout = x.layout();
    let stride = layout.stride();
    let d = x.dims().last().copied().unwrap_or(0);
    stride.len() == 4
        && stride[3] == 1
        && stride[2] == d
        && (layout.start_offset() * x.dtype().size_in_bytes()) % 16 == 0
        && (stride[1] * x.dtype().size_in_bytes()) % 16 == 0
}

struct FlashAttention;

impl candle_core::CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "sdtp-flash-attention"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
        _: &candle_core::CpuStorage,
        _: &Layout,
    ) -> Result<(candle_core::CpuStorage, Shape)> {
        candle_core::bail!("the fused attention kernel runs on CUDA only")
    }

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
        let (_, heads, t, d) = lq.shape().dims4()?;
        let (_, kv_heads, n, _) = lk.shape().dims4()?;
        if heads % kv_heads != 0 || t > n || lv.shape().dims4()?.2 != n {
            candle_core::bail!(
                "flash attention: q {:?} k {:?} v {:?}",
                lq.shape(),
                lk.shape(),
                lv.shape()
            );
        }
        let suffix = match q.dtype() {
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            other => candle_core::bail!("flash attention: unsupported dtype {other:?}"),
        };
        let func = dev.get_or_load_custom_func(
            &format!("flash_attn_{suffix}_d{d}"),
            "sdtp_flash_attn",
            PTX,
        )?;
        let scale_log2 = (1.0 / (d as f64).sqrt() * std::f64::consts::LOG2_E) as f32;
        let cfg = LaunchConfig {
            grid_dim: (t.div_ceil(BLOCK_M) as u32, heads as u32, 1),
            block_dim: (128, 1, 1),
            shared_mem_bytes: 0,
        };
        let (t_i, n_i, h_i, g_i) = (t as i32, n as i32, heads as i32, (heads / kv_heads) as i32);
        let k_stride = lk.stride()[1] as i64;
        let v_stride = lv.stride()[1] as i64;
        macro_rules! launch {
            ($variant:ident, $ty:ty) => {{
                let (
                    CudaStorageSlice::$variant(qs),
                    CudaStorageSlice::$variant(ks),
                    CudaStorageSlice::$variant(vs),
                ) = (&q.slice, &k.slice, &v.slice)
                else {
                    candle_core::bail!("flash attention: q, k and v must share a dtype")
                };
                let qs = qs.slice(lq.start_offset()..);
                let ks = ks.slice(lk.start_offset()..);
                let vs = vs.slice(lv.start_offset()..);
                // SAFETY: every element is written by the kernel before it is read.
                let out = unsafe { dev.alloc::<$ty>(t * heads * d)? };
                let mut builder = func.builder();
                builder.arg(&qs);
                builder.arg(&ks);
                builder.arg(&vs);
                builder.arg(&out);
                builder.arg(&t_i);
                builder.arg(&n_i);
                builder.arg(&h_i);
                builder.arg(&g_i);
                builder.arg(&k_stride);
                builder.arg(&v_stride);
                builder.arg(&scale_log2);
                // SAFETY: arguments match the kernel's signature in kernels/flash_attn.cu.
                unsafe { builder.launch(cfg) }.w()?;
                CudaStorageSlice::$variant(out)
            }};
        }
        let slice = match q.dtype() {
            DType::BF16 => launch!(BF16, half::bf16),
            _ => launch!(F16, half::f16),
        };
        Ok((
            CudaStorage { slice, device: dev },
            Shape::from((t, heads, d)),
        ))
    }
}
