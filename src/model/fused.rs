//! Fused element-wise steps of the layer: one kernel on CUDA (kernels/fused_ops.cu), candle's
//! ops everywhere else and whenever gradients are needed (the fused kernels have no backward).

use candle_core::{Result, Tensor};

use super::llama::Kernels;

/// silu(gate) · up, the SwiGLU activation.
pub fn silu_mul(gate: &Tensor, up: &Tensor, kernels: Kernels) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if kernels == Kernels::Fast
        && gate.device().is_cuda()
        && gate.is_contiguous()
        && up.is_contiguous()
        && gate.shape() == up.shape()
        && gate.dtype() == up.dtype()
    {
        return gate.apply_op2_no_bwd(up, &cuda::SiluMul);
    }
    let _ = kernels;
    candle_nn::ops::silu(gate)? * up
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CudaStorage, DType, Layout, Result, Shape};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused_ops.ptx"));

    pub struct SiluMul;

    impl candle_core::CustomOp2 for SiluMul {
        fn name(&self) -> &'static str {
            "sdtp-silu-mul"
        }

        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &Layout,
            _: &candle_core::CpuStorage,
            _: &Layout,
        ) -> Result<(candle_core::CpuStorage, Shape)> {
            candle_core::bail!("the fused silu·mul kernel runs on CUDA only")
        }

        fn cuda_fwd(
            &self,
            gate: &CudaStorage,
            lg: &Layout,
            up: &CudaStorage,
            lu: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = gate.device().clone();
            let n = lg.shape().elem_count();
            let suffix = match gate.dtype() {
                DType::BF16 => "bf16",
                DType::F16 => "f16",
                DType::F32 => "f32",
                other => candle_core::bail!("silu·mul: unsupported dtype {other:?}"),
            };
            let func =
                dev.get_or_load_custom_func(&format!("silu_mul_{suffix}"), "sdtp_fused_ops", PTX)?;
            // Enough CTAs to fill the GPU several times over; the kernel loops over the rest.
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(256 * 8).clamp(1, 4096) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let n_i = n as i64;
            macro_rules! run {
                ($variant:ident, $ty:ty) => {{
                    let (CudaStorageSlice::$variant(g), CudaStorageSlice::$variant(u)) =
                        (&gate.slice, &up.slice)
                    else {
                        candle_core::bail!("silu·mul: gate and up must share a dtype")
                    };
                    let (g, u) = (g.slice(lg.start_offset()..), u.slice(lu.start_offset()..));
                    // SAFETY: every element is written by the kernel.
                    let out = unsafe { dev.alloc::<$ty>(n)? };
                    let mut b = func.builder();
                    b.arg(&g).arg(&u).arg(&out).arg(&n_i);
                    // SAFETY: matches silu_mul_* in kernels/fused_ops.cu; both inputs hold n
                    // contiguous elements.
                    unsafe { b.launch(cfg) }.w()?;
                    CudaStorageSlice::$variant(out)
                }};
            }
            let slice = match gate.dtype() {
                DType::BF16 => run!(BF16, half::bf16),
                DType::F16 => run!(F16, half::f16),
                _ => run!(F32, f32),
            };
            Ok((CudaStorage { slice, device: dev }, lg.shape().clone()))
        }
    }
}
