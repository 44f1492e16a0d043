//! Causal attention through cuDNN's fused SDPA (kernels/cudnn_sdpa.cpp), the fastest
//! attention on Hopper that we can call (a wgmma flash kernel; docs/gpu.md has the numbers
//! against our own kernel in `flash.rs`). cuDNN is opened with dlopen at the first call:
//! where it cannot be loaded, or refuses a shape, a warning is logged once and every later
//! call goes to our own kernel. `SDTP_CUDNN=0` turns it off (to compare the two).

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::DevicePtr;
use candle_core::cuda_backend::CudaStorageSlice;
use candle_core::{CudaStorage, DType, Layout, Result, Shape, Tensor};

use super::cuda_kernels::{cuda_only, AttentionDims};

extern "C" {
    #[allow(clippy::too_many_arguments)]
    fn sdtp_cudnn_sdpa(
        stream: *mut c_void,
        bf16: c_int,
        heads: i64,
        kv_heads: i64,
        t: i64,
        n: i64,
        d: i64,
        q: *const c_void,
        q_stride: *const i64,
        k: *const c_void,
        k_stride: *const i64,
        v: *const c_void,
        v_stride: *const i64,
        out: *mut c_void,
        out_stride: *const i64,
        scale: f32,
        stats: *mut f32,
        workspace: *mut c_void,
        workspace_size: i64,
        workspace_needed: *mut i64,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
}

/// Fewer queries than this (decode steps, short chunks) go to our kernel: cuDNN builds one
/// graph per shape, and a decode step has a new key count every token.
const MIN_QUERIES: usize = 64;

static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

fn enabled() -> bool {
    static FROM_ENV: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FROM_ENV.get_or_init(|| std::env::var("SDTP_CUDNN").map_or(true, |v| v != "0"))
        && !UNAVAILABLE.load(Ordering::Relaxed)
}

/// Attention of q (1, heads, t, d) over k/v (1, kv_heads, n, d) through cuDNN, or `None`
/// when it does not apply (CPU, dtype, short t, disabled or unavailable).
pub fn try_cudnn_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<Tensor>> {
    run(q, k, v, None)
}

/// [`try_cudnn_attention`] that also returns each query row's natural-log log-sum-exp of its
/// scaled scores, (heads, t) f32: what the fused tail scorer normalises with.
pub fn try_cudnn_attention_with_stats(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
) -> Result<Option<(Tensor, Tensor)>> {
    let (_, heads, t, _) = q.dims4()?;
    let stats = Tensor::zeros((heads, t), DType::F32, q.device())?;
    Ok(run(q, k, v, Some(stats.clone()))?.map(|out| (out, stats)))
}

fn run(q: &Tensor, k: &Tensor, v: &Tensor, stats: Option<Tensor>) -> Result<Option<Tensor>> {
    let applies = q.device().is_cuda()
        && matches!(q.dtype(), DType::BF16 | DType::F16)
        && matches!(q.dim(3)?, 64 | 128)
        && q.dim(2)? >= MIN_QUERIES
        && [q, k, v].iter().all(|x| x.stride().last() == Some(&1))
        && enabled();
    if !applies {
        return Ok(None);
    }
    let (_, heads, t, d) = q.dims4()?;
    match q.apply_op3_no_bwd(k, v, &CudnnAttention { stats }) {
        // The op writes (t, heads, d); hand back the (1, heads, t, d) view callers expect.
        Ok(out) => Ok(Some(out.reshape((1, t, heads, d))?.transpose(1, 2)?)),
        Err(e) => {
            if !UNAVAILABLE.swap(true, Ordering::Relaxed) {
                tracing::warn!("cuDNN attention unavailable ({e}); using sdtp's own kernel");
            }
            Ok(None)
        }
    }
}

/// With `stats`, cuDNN also writes the row log-sum-exps into that (heads, t) f32 tensor,
/// which the caller made for the purpose and nothing else holds.
struct CudnnAttention {
    stats: Option<Tensor>,
}

fn strides(layout: &Layout) -> [i64; 4] {
    let s = layout.stride();
    [s[0] as i64, s[1] as i64, s[2] as i64, s[3] as i64]
}

impl candle_core::CustomOp3 for CudnnAttention {
    fn name(&self) -> &'static str {
        "sdtp-cudnn-attention"
    }

    cuda_only!(3, "cuDNN attention");

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
        let stream = dev.cuda_stream();
        let dims = AttentionDims::check("cuDNN attention", lq, lk, Some(lv))?;
        let (heads, kv_heads, t, n, d) = (dims.heads, dims.kv_heads, dims.t, dims.n, dims.d);
        let out_stride = [(t * heads * d) as i64, d as i64, (heads * d) as i64, 1];
        let (q_stride, k_stride, v_stride) = (strides(lq), strides(lk), strides(lv));
        let scale = (1.0 / (d as f64).sqrt()) as f32;
        // A raw pointer into `stats` under its read guard: the tensor is fresh and private to
        // the caller, so nothing reads it while cuDNN writes.
        let stats_guard = self.stats.as_ref().map(|s| s.storage_and_layout());
        let stats_ptr = match &stats_guard {
            Some((storage, layout)) => match &**storage {
                candle_core::Storage::Cuda(CudaStorage {
                    slice: CudaStorageSlice::F32(s),
                    ..
                }) if layout.is_contiguous() && layout.shape().dims() == [heads, t] => {
                    s.slice(layout.start_offset()..).device_ptr(&stream).0 as *mut f32
                }
                _ => candle_core::bail!("cuDNN attention: stats must be (heads, t) f32 on CUDA"),
            },
            None => std::ptr::null_mut(),
        };
        macro_rules! run {
            ($variant:ident, $ty:ty, $bf16:expr) => {{
                let (
                    CudaStorageSlice::$variant(qs),
                    CudaStorageSlice::$variant(ks),
                    CudaStorageSlice::$variant(vs),
                ) = (&q.slice, &k.slice, &v.slice)
                else {
                    candle_core::bail!("cuDNN attention: q, k and v must share a dtype")
                };
                // SAFETY: cuDNN writes every element of the output.
                let out = unsafe { dev.alloc::<$ty>(t * heads * d)? };
                let (qs, ks, vs) = (
                    qs.slice(lq.start_offset()..),
                    ks.slice(lk.start_offset()..),
                    vs.slice(lv.start_offset()..),
                );
                let (qp, _q_guard) = qs.device_ptr(&stream);
                let (kp, _k_guard) = ks.device_ptr(&stream);
                let (vp, _v_guard) = vs.device_ptr(&stream);
                let (op, _o_guard) = out.device_ptr(&stream);
                let mut workspace: Option<
                    candle_core::cuda_backend::cudarc::driver::CudaSlice<u8>,
                > = None;
                loop {
                    let (ws_ptr, ws_len) = match &workspace {
                        Some(w) => (w.device_ptr(&stream).0 as *mut c_void, w.len() as i64),
                        None => (std::ptr::null_mut(), 0),
                    };
                    let mut needed = 0i64;
                    let mut err = [0 as c_char; 512];
                    // SAFETY: the pointers are live device buffers of the shapes and strides
                    // passed; the output and workspace are ours; `err` has err.len() bytes.
                    let rc = unsafe {
                        sdtp_cudnn_sdpa(
                            stream.cu_stream() as *mut c_void,
                            $bf16,
                            heads as i64,
                            kv_heads as i64,
                            t as i64,
                            n as i64,
                            d as i64,
                            qp as *const c_void,
                            q_stride.as_ptr(),
                            kp as *const c_void,
                            k_stride.as_ptr(),
                            vp as *const c_void,
                            v_stride.as_ptr(),
                            op as *mut c_void,
                            out_stride.as_ptr(),
                            scale,
                            stats_ptr,
                            ws_ptr,
                            ws_len,
                            &mut needed,
                            err.as_mut_ptr(),
                            err.len(),
                        )
                    };
                    match rc {
                        0 => break,
                        2 if workspace.is_none() => {
                            // SAFETY: scratch for cuDNN, never read by us.
                            workspace = Some(unsafe { dev.alloc::<u8>(needed as usize)? });
                        }
                        _ => {
                            // SAFETY: the shim always NUL-terminates within err.len().
                            let msg = unsafe { std::ffi::CStr::from_ptr(err.as_ptr()) };
                            candle_core::bail!("{}", msg.to_string_lossy())
                        }
                    }
                }
                drop((_q_guard, _k_guard, _v_guard, _o_guard));
                CudaStorageSlice::$variant(out)
            }};
        }
        let slice = match q.dtype() {
            DType::BF16 => run!(BF16, half::bf16, 1),
            DType::F16 => run!(F16, half::f16, 0),
            other => candle_core::bail!("cuDNN attention: unsupported dtype {other:?}"),
        };
        Ok((
            CudaStorage { slice, device: dev },
            Shape::from((t, heads, d)),
        ))
    }
}
