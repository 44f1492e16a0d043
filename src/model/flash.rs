//! Fused causal attention and the fused attention-scorer saliency on CUDA
//! (kernels/flash_attn.cu, compiled to PTX by build.rs): tiled, online softmax, tensor cores,
//! no n×n scores in memory. Used for bf16/f16 with head dims 64 and 128; anything else takes
//! the blocked path in `attention.rs`.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
use candle_core::{CudaStorage, DType, Layout, Result, Shape, Tensor};

use super::cuda_kernels::{cuda_only, dtype_suffix, AttentionDims, Kernel};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/flash_attn.ptx"));

/// Query rows per CTA of `flash_attn_*` and `tail_lse_*` (4 warps × 32 rows) and keys per
/// tile: FLASH_NW·16·FLASH_MT and FLASH_BN in kernels/flash_attn.cu.
const BLOCK_M: usize = 128;
const BLOCK_N: usize = 64;
/// Key rows per CTA and query rows per tile of `tail_scores_*` (TAIL_KEYS, TAIL_QUERIES).
const TAIL_KEYS: usize = 64;
const TAIL_QUERIES: usize = 64;
const THREADS: u32 = 128;

/// Shared memory of a CTA holding `rows` padded rows of head dim `d` (the kernels pad each
/// row by 8 elements so that ldmatrix and the 16-byte copies avoid bank conflicts).
fn smem_bytes(rows: usize, d: usize) -> u32 {
    (rows * (d + 8) * 2) as u32
}

fn supported(q: &Tensor, k: &Tensor) -> Result<bool> {
    Ok(q.device().is_cuda()
        && matches!(q.dtype(), DType::BF16 | DType::F16)
        && matches!(q.dim(3)?, 64 | 128)
        && rows_contiguous(k))
}

/// Attention of q (1, heads, t, d) over k/v (1, kv_heads, n, d) (the t queries are the last t
/// keys), or `None` when the fused kernel does not cover these inputs.
pub fn try_flash_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<Tensor>> {
    if !supported(q, k)? || !rows_contiguous(v) {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let (_, heads, t, d) = q.dims4()?;
    let out = q.apply_op3_no_bwd(k, v, &FlashAttention)?;
    // The kernel writes (t, heads, d); hand back the (1, heads, t, d) view callers expect.
    Ok(Some(out.reshape((1, t, heads, d))?.transpose(1, 2)?))
}

/// Mean attention each of the n keys gets from the last `tail` queries, per head, as
/// (heads, n) f32: `tail_attention` of `attention.rs` fused, or `None` when the kernels do
/// not cover these inputs. `cudnn_stats` are the (heads, t) natural-log row
/// log-sum-exps cuDNN's attention already produced; without them a statistics pass over the
/// tail rows computes them first.
pub fn try_tail_attention(
    q: &Tensor,
    k: &Tensor,
    tail: usize,
    cudnn_stats: Option<&Tensor>,
) -> Result<Option<Tensor>> {
    if !supported(q, k)? {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let t = q.dim(2)?;
    let tail = tail.clamp(1, t);
    let sums = match cudnn_stats {
        Some(stats) => q.apply_op3_no_bwd(
            k,
            stats,
            &TailScores {
                tail,
                lse_scale: std::f32::consts::LOG2_E,
            },
        )?,
        None => {
            let lse = q.apply_op2_no_bwd(k, &TailLse { tail })?;
            q.apply_op3_no_bwd(
                k,
                &lse,
                &TailScores {
                    tail,
                    lse_scale: 1.0,
                },
            )?
        }
    };
    Ok(Some((sums / tail as f64)?))
}

/// Last dim contiguous, rows packed within a head, 16-byte aligned start: what the kernels'
/// vector loads need. KV-cache views satisfy it (their head stride has spare capacity).
fn rows_contiguous(x: &Tensor) -> bool {
    let layout = x.layout();
    let stride = layout.stride();
    let d = x.dims().last().copied().unwrap_or(0);
    stride.len() == 4
        && stride[3] == 1
        && stride[2] == d
        && (layout.start_offset() * x.dtype().size_in_bytes()).is_multiple_of(16)
        && (stride[1] * x.dtype().size_in_bytes()).is_multiple_of(16)
}

fn scale_log2(d: usize) -> f32 {
    (1.0 / (d as f64).sqrt() * std::f64::consts::LOG2_E) as f32
}

/// q, k (and v) as typed device slices starting at their layouts' offsets.
macro_rules! typed_slices {
    ($variant:ident, $(($storage:expr, $layout:expr)),+) => {
        ($(match &$storage.slice {
            CudaStorageSlice::$variant(s) => s.slice($layout.start_offset()..),
            _ => candle_core::bail!("fused attention: inputs must share a dtype"),
        }),+)
    };
}

struct FlashAttention;

impl candle_core::CustomOp3 for FlashAttention {
    fn name(&self) -> &'static str {
        "sdtp-flash-attention"
    }

    cuda_only!(3, "the fused attention kernel");

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
        let dims = AttentionDims::check("flash attention", lq, lk, Some(lv))?;
        let (heads, t, n, d) = (dims.heads, dims.t, dims.n, dims.d);
        let smem = smem_bytes(BLOCK_M + 2 * BLOCK_N, d);
        let suffix = dtype_suffix(q.dtype(), "fused attention")?;
        let kernel = Kernel::load(&dev, PTX, &format!("flash_attn_{suffix}_d{d}"), smem)?;
        // Heads on the fast grid axis: the kernel takes the heaviest query blocks first.
        let cfg = LaunchConfig {
            grid_dim: (heads as u32, t.div_ceil(BLOCK_M) as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: smem,
        };
        let (t_i, n_i, h_i, g_i) = (t as i32, n as i32, heads as i32, dims.groups() as i32);
        let (k_stride, v_stride) = (lk.stride()[1] as i64, lv.stride()[1] as i64);
        let scale = scale_log2(d);
        macro_rules! run {
            ($variant:ident, $ty:ty) => {{
                let (qs, ks, vs) = typed_slices!($variant, (q, lq), (k, lk), (v, lv));
                // SAFETY: every element is written by the kernel before anything reads it.
                let out = unsafe { dev.alloc::<$ty>(t * heads * d)? };
                let mut b = kernel.builder();
                b.arg(&qs).arg(&ks).arg(&vs).arg(&out);
                b.arg(&t_i).arg(&n_i).arg(&h_i).arg(&g_i);
                b.arg(&k_stride).arg(&v_stride).arg(&scale);
                // SAFETY: the arguments match flash_attn_* in kernels/flash_attn.cu.
                unsafe { b.launch(cfg) }.w()?;
                CudaStorageSlice::$variant(out)
            }};
        }
        let slice = match q.dtype() {
            DType::BF16 => run!(BF16, half::bf16),
            _ => run!(F16, half::f16),
        };
        Ok((
            CudaStorage { slice, device: dev },
            Shape::from((t, heads, d)),
        ))
    }
}

/// Log-sum-exp (log2 units) of the last `tail` query rows, (heads, tail) f32: the tile loop of
/// the attention kernel without V.
struct TailLse {
    tail: usize,
}

impl candle_core::CustomOp2 for TailLse {
    fn name(&self) -> &'static str {
        "sdtp-tail-lse"
    }

    cuda_only!(2, "the fused tail log-sum-exp");

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        lq: &Layout,
        k: &CudaStorage,
        lk: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = q.device().clone();
        let dims = AttentionDims::check("tail lse", lq, lk, None)?;
        let (heads, t, n, d) = (dims.heads, dims.t, dims.n, dims.d);
        let tail = self.tail;
        if tail == 0 || tail > t {
            candle_core::bail!("tail lse: tail {tail} of {t} queries");
        }
        let smem = smem_bytes(BLOCK_M + 2 * BLOCK_N, d);
        let suffix = dtype_suffix(q.dtype(), "tail log-sum-exp")?;
        let kernel = Kernel::load(&dev, PTX, &format!("tail_lse_{suffix}_d{d}"), smem)?;
        let cfg = LaunchConfig {
            grid_dim: (heads as u32, tail.div_ceil(BLOCK_M) as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: smem,
        };
        let (t_i, tail_i, n_i, h_i, g_i) = (
            t as i32,
            tail as i32,
            n as i32,
            heads as i32,
            dims.groups() as i32,
        );
        let k_stride = lk.stride()[1] as i64;
        let scale = scale_log2(d);
        // SAFETY: the kernel writes every row's value.
        let lse = unsafe { dev.alloc::<f32>(heads * tail)? };
        macro_rules! run {
            ($variant:ident) => {{
                let (qs, ks) = typed_slices!($variant, (q, lq), (k, lk));
                let mut b = kernel.builder();
                b.arg(&qs)
                    .arg(&ks)
                    .arg(&lse)
                    .arg(&t_i)
                    .arg(&tail_i)
                    .arg(&n_i);
                b.arg(&h_i).arg(&g_i).arg(&k_stride).arg(&scale);
                // SAFETY: matches tail_lse_* in kernels/flash_attn.cu.
                unsafe { b.launch(cfg) }.w()?;
            }};
        }
        match q.dtype() {
            DType::BF16 => run!(BF16),
            _ => run!(F16),
        }
        Ok((
            CudaStorage {
                slice: CudaStorageSlice::F32(lse),
                device: dev,
            },
            Shape::from((heads, tail)),
        ))
    }
}

/// Sum over the last `tail` queries of the softmax attention each key gets from each head,
/// (heads, n) f32, given those rows' log-sum-exps: a (heads, rows >= tail) f32 tensor whose last `tail`
/// columns belong to the tail rows, in log2 units after multiplying by `lse_scale`.
struct TailScores {
    tail: usize,
    lse_scale: f32,
}

impl candle_core::CustomOp3 for TailScores {
    fn name(&self) -> &'static str {
        "sdtp-tail-scores"
    }

    cuda_only!(3, "the fused tail scores");

    fn cuda_fwd(
        &self,
        q: &CudaStorage,
        lq: &Layout,
        k: &CudaStorage,
        lk: &Layout,
        lse: &CudaStorage,
        ll: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        let dev = q.device().clone();
        let dims = AttentionDims::check("tail scores", lq, lk, None)?;
        let (heads, t, n, d) = (dims.heads, dims.t, dims.n, dims.d);
        let (lse_heads, lse_rows) = ll.shape().dims2()?;
        let tail = self.tail;
        if tail == 0 || tail > t || lse_heads != heads || lse_rows < tail || ll.stride()[1] != 1 {
            candle_core::bail!(
                "tail scores: tail {tail} of {t} queries, lse {:?}",
                ll.shape()
            );
        }
        let CudaStorageSlice::F32(lse) = &lse.slice else {
            candle_core::bail!("tail scores: the log-sum-exps must be f32")
        };
        let lse = lse.slice(ll.start_offset() + (lse_rows - tail)..);
        let lse_head_stride = ll.stride()[0] as i64;
        // The key tile and two query tiles.
        let smem = smem_bytes(TAIL_KEYS + 2 * TAIL_QUERIES, d);
        let suffix = dtype_suffix(q.dtype(), "tail scores")?;
        let kernel = Kernel::load(&dev, PTX, &format!("tail_scores_{suffix}_d{d}"), smem)?;
        let cfg = LaunchConfig {
            grid_dim: (heads as u32, n.div_ceil(TAIL_KEYS) as u32, 1),
            block_dim: (THREADS, 1, 1),
            shared_mem_bytes: smem,
        };
        let (t_i, n_i, tail_i, g_i) = (t as i32, n as i32, tail as i32, dims.groups() as i32);
        let k_stride = lk.stride()[1] as i64;
        let scale = scale_log2(d);
        let scores = dev.alloc_zeros::<f32>(heads * n)?;
        macro_rules! run {
            ($variant:ident) => {{
                let (qs, ks) = typed_slices!($variant, (q, lq), (k, lk));
                let mut b = kernel.builder();
                b.arg(&qs)
                    .arg(&ks)
                    .arg(&lse)
                    .arg(&lse_head_stride)
                    .arg(&self.lse_scale);
                b.arg(&scores).arg(&t_i).arg(&n_i).arg(&tail_i).arg(&g_i);
                b.arg(&k_stride).arg(&scale);
                // SAFETY: matches tail_scores_* in kernels/flash_attn.cu; `scores` is zeroed.
                unsafe { b.launch(cfg) }.w()?;
            }};
        }
        match q.dtype() {
            DType::BF16 => run!(BF16),
            _ => run!(F16),
        }
        Ok((
            CudaStorage {
                slice: CudaStorageSlice::F32(scores),
                device: dev,
            },
            Shape::from((heads, n)),
        ))
    }
}
