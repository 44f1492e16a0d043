//! Fused element-wise and layout steps of the layer: one kernel on CUDA
//! (kernels/fused_ops.cu), candle's ops everywhere else and whenever gradients are needed (the
//! fused kernels have no backward).

use candle_core::{Result, Tensor};

use super::kernels::Kernels;

/// silu(gate) · up, the SwiGLU activation. gate and up may be row-strided views (the two
/// halves of a fused gate/up projection); the result is contiguous.
pub fn silu_mul(gate: &Tensor, up: &Tensor, kernels: Kernels) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if kernels == Kernels::Fast
        && gate.device().is_cuda()
        && gate.shape() == up.shape()
        && gate.dtype() == up.dtype()
        && cuda::row_stride(gate).is_some()
        && cuda::row_stride(up).is_some()
    {
        return gate.apply_op2_no_bwd(up, &cuda::SiluMul);
    }
    let _ = kernels;
    candle_nn::ops::silu(gate)? * up
}

/// (1, t, heads, d) -> (1, heads, t, d), contiguous: the KV-cache layout from the projection's.
pub fn to_heads_major(x: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda()
        && x.is_contiguous()
        && matches!(
            x.dtype(),
            candle_core::DType::BF16 | candle_core::DType::F16
        )
        && x.rank() == 4
        && x.dim(0)? == 1
        && x.dim(3)? % 8 == 0
    {
        return x.apply_op1_no_bwd(&cuda::HeadsMajor);
    }
    x.transpose(1, 2)?.contiguous()
}

/// Rows `index` (u32, (m,)) of `x` (1, n, cols) as (1, m, cols): the kept tokens' hidden
/// states after a prune stage.
pub fn gather_rows(x: &Tensor, index: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if x.device().is_cuda()
        && x.is_contiguous()
        && index.is_contiguous()
        && index.dtype() == candle_core::DType::U32
        && matches!(
            x.dtype(),
            candle_core::DType::BF16 | candle_core::DType::F16
        )
        && x.rank() == 3
        && x.dim(0)? == 1
        && x.dim(2)? % 8 == 0
    {
        return x.apply_op2_no_bwd(index, &cuda::GatherRows);
    }
    x.index_select(index, 1)
}

/// `SDTP_CUBLAS_GEMV=1`, read once: every projection asks.
#[cfg(feature = "cuda")]
fn cublas_gemv_asked() -> bool {
    static ASKED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ASKED.get_or_init(|| matches!(std::env::var("SDTP_CUBLAS_GEMV").as_deref(), Ok("1")))
}

/// `x · [w₀; w₁; …]ᵀ` for a single input row `x` (…, cols) and one to three row-major
/// weights `ws` (rowsᵢ, cols), the outputs one after another in the last dim, on CUDA through
/// sdtp's GEMV kernel in one launch; `None` where it does not apply (more than one row, not
/// CUDA, a dtype or shape it does not take, or `SDTP_CUBLAS_GEMV=1`, which keeps cuBLAS for
/// comparisons). Decode steps and the prefill's last-token logits take this path.
pub fn try_gemv(x: &Tensor, ws: &[&Tensor]) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    {
        let cols = x.dim(candle_core::D::Minus1)?;
        let dtype = x.dtype();
        let fits = |w: &Tensor| -> Result<bool> {
            Ok(w.rank() == 2
                && w.dim(1)? == cols
                && w.dtype() == dtype
                && w.is_contiguous()
                && w.layout().start_offset() == 0)
        };
        let mut all_fit = (1..=3).contains(&ws.len());
        for w in ws {
            all_fit = all_fit && fits(w)?;
        }
        let applies = all_fit
            && x.device().is_cuda()
            && x.elem_count() == cols
            && matches!(
                dtype,
                candle_core::DType::BF16 | candle_core::DType::F16 | candle_core::DType::F32
            )
            && (cols * dtype.size_in_bytes()).is_multiple_of(16)
            && !cublas_gemv_asked();
        if applies {
            let rows: Vec<usize> = ws.iter().map(|w| w.dim(0)).collect::<Result<_>>()?;
            let op = cuda::Gemv {
                more: ws[1..].iter().map(|w| (*w).clone()).collect(),
            };
            let y = ws[0].apply_op2_no_bwd(&x.contiguous()?, &op)?;
            let mut dims = x.dims().to_vec();
            if let Some(last) = dims.last_mut() {
                *last = rows.iter().sum();
            }
            return Ok(Some(y.reshape(dims)?));
        }
    }
    let _ = (x, ws);
    Ok(None)
}

/// `h + delta` and the RMSNorm of it (weight `norm`), for one row on CUDA in one kernel with
/// the same bits as the add and candle's rmsnorm kernel, else the two ops. Returns
/// (sum, normed), both shaped as `h`. The decode step's residual adds go through it.
pub fn add_rms_norm(
    h: &Tensor,
    delta: &Tensor,
    norm: &candle_nn::RmsNorm,
) -> Result<(Tensor, Tensor)> {
    #[cfg(feature = "cuda")]
    {
        let cols = h.dim(candle_core::D::Minus1)?;
        if h.device().is_cuda()
            && h.elem_count() == cols
            && delta.elem_count() == cols
            && h.dtype() == delta.dtype()
            && norm.weight().dtype() == h.dtype()
            && matches!(
                h.dtype(),
                candle_core::DType::BF16 | candle_core::DType::F16 | candle_core::DType::F32
            )
        {
            let both = h.contiguous()?.apply_op3_no_bwd(
                &delta.contiguous()?,
                norm.weight(),
                &cuda::AddRmsNorm {
                    eps: norm.eps() as f32,
                },
            )?;
            return Ok((
                both.narrow(0, 0, 1)?.reshape(h.shape())?,
                both.narrow(0, 1, 1)?.reshape(h.shape())?,
            ));
        }
    }
    let sum = (h + delta)?;
    let normed = candle_core::Module::forward(norm, &sum)?;
    Ok((sum, normed))
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaStorageSlice, WrapErr};
    use candle_core::{CudaStorage, DType, Layout, Result, Shape};

    use crate::model::cuda_kernels::{cuda_only, dtype_suffix, Kernel};

    const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused_ops.ptx"));

    pub struct SiluMul;

    /// The single row stride of a tensor whose last dim is contiguous and whose other dims
    /// collapse into rows (as in a (1, t, cols) view of wider rows).
    pub fn row_stride(x: &candle_core::Tensor) -> Option<usize> {
        row_stride_of(x.layout())
    }

    fn row_stride_of(l: &Layout) -> Option<usize> {
        let (dims, stride) = (l.dims(), l.stride());
        let rank = dims.len();
        if rank == 0 || stride[rank - 1] != 1 {
            return None;
        }
        if rank == 1 {
            return Some(dims[0]);
        }
        let row = stride[rank - 2];
        // Every outer dim must step by whole rows, in order.
        let mut expect = row * dims[rank - 2];
        for i in (0..rank - 2).rev() {
            if dims[i] > 1 && stride[i] != expect {
                return None;
            }
            expect *= dims[i];
        }
        Some(row)
    }

    impl candle_core::CustomOp2 for SiluMul {
        fn name(&self) -> &'static str {
            "sdtp-silu-mul"
        }

        cuda_only!(2, "the fused silu·mul kernel");

        fn cuda_fwd(
            &self,
            gate: &CudaStorage,
            lg: &Layout,
            up: &CudaStorage,
            lu: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = gate.device().clone();
            let n = lg.shape().elem_count();
            let cols = lg.dims().last().copied().unwrap_or(1);
            let rows = n / cols.max(1);
            let (Some(gs), Some(us)) = (row_stride_of(lg), row_stride_of(lu)) else {
                candle_core::bail!("silu·mul: operands must be row-strided")
            };
            let vec_elems = 16 / gate.dtype().size_in_bytes();
            let vec = [cols, gs, us, lg.start_offset(), lu.start_offset()]
                .iter()
                .all(|x| x % vec_elems == 0);
            let suffix = dtype_suffix(gate.dtype(), "silu·mul")?;
            let func = Kernel::load(&dev, PTX, &format!("silu_mul_{suffix}"), 0)?;
            // Enough CTAs to fill the GPU several times over; the kernel loops over the rest.
            let cfg = LaunchConfig {
                grid_dim: (n.div_ceil(256 * 8).clamp(1, 4096) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let (rows_i, cols_i, vec_i) = (rows as i32, cols as i32, vec as i32);
            let (gs_i, us_i) = (gs as i64, us as i64);
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
                    b.arg(&g).arg(&u).arg(&out).arg(&rows_i).arg(&cols_i);
                    b.arg(&gs_i).arg(&us_i).arg(&vec_i);
                    // SAFETY: matches silu_mul_* in kernels/fused_ops.cu; rows × cols with the
                    // row strides measured above stay inside both inputs.
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

    pub struct HeadsMajor;

    impl candle_core::CustomOp1 for HeadsMajor {
        fn name(&self) -> &'static str {
            "sdtp-heads-major"
        }

        cuda_only!(1, "the heads-major copy kernel");

        fn cuda_fwd(&self, x: &CudaStorage, l: &Layout) -> Result<(CudaStorage, Shape)> {
            let dev = x.device().clone();
            let (_, t, heads, d) = l.shape().dims4()?;
            let suffix = dtype_suffix(x.dtype(), "heads-major copy")?;
            let func = Kernel::load(&dev, PTX, &format!("heads_major_{suffix}"), 0)?;
            let chunks = t * heads * d / 8;
            let cfg = LaunchConfig {
                grid_dim: (chunks.div_ceil(256).clamp(1, 8192) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let (t_i, h_i, d_i) = (t as i32, heads as i32, d as i32);
            macro_rules! run {
                ($variant:ident, $ty:ty) => {{
                    let CudaStorageSlice::$variant(src) = &x.slice else {
                        candle_core::bail!("heads-major copy: dtype mismatch")
                    };
                    let src = src.slice(l.start_offset()..);
                    // SAFETY: every element is written by the kernel.
                    let out = unsafe { dev.alloc::<$ty>(t * heads * d)? };
                    let mut b = func.builder();
                    b.arg(&src).arg(&out).arg(&t_i).arg(&h_i).arg(&d_i);
                    // SAFETY: matches heads_major_* in kernels/fused_ops.cu; the input is
                    // contiguous (1, t, heads, d) with d a multiple of 8.
                    unsafe { b.launch(cfg) }.w()?;
                    CudaStorageSlice::$variant(out)
                }};
            }
            let slice = match x.dtype() {
                DType::BF16 => run!(BF16, half::bf16),
                _ => run!(F16, half::f16),
            };
            Ok((
                CudaStorage { slice, device: dev },
                Shape::from((1, heads, t, d)),
            ))
        }
    }

    pub struct AddRmsNorm {
        pub eps: f32,
    }

    impl candle_core::CustomOp3 for AddRmsNorm {
        fn name(&self) -> &'static str {
            "sdtp-add-rms-norm"
        }

        cuda_only!(3, "the fused add + RMSNorm kernel");

        fn cuda_fwd(
            &self,
            h: &CudaStorage,
            lh: &Layout,
            delta: &CudaStorage,
            ld: &Layout,
            w: &CudaStorage,
            lw: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = h.device().clone();
            let cols = lh.shape().elem_count();
            if ld.shape().elem_count() != cols
                || lw.shape().elem_count() != cols
                || !lh.is_contiguous()
                || !ld.is_contiguous()
                || !lw.is_contiguous()
            {
                candle_core::bail!(
                    "add + rms norm of {:?}, {:?} and {:?}",
                    lh.shape(),
                    ld.shape(),
                    lw.shape()
                );
            }
            let suffix = dtype_suffix(h.dtype(), "add + rms norm")?;
            let func = Kernel::load(&dev, PTX, &format!("add_rms_norm_{suffix}"), 0)?;
            // candle's rmsnorm launch: one warp below 1024 columns, else 1024 threads.
            let block = if cols < 1024 { 32 } else { 1024 };
            let cfg = LaunchConfig {
                grid_dim: (1, 1, 1),
                block_dim: (block, 1, 1),
                shared_mem_bytes: 0,
            };
            let cols_i = cols as i32;
            macro_rules! run {
                ($variant:ident, $ty:ty) => {{
                    let (
                        CudaStorageSlice::$variant(hs),
                        CudaStorageSlice::$variant(ds),
                        CudaStorageSlice::$variant(ws),
                    ) = (&h.slice, &delta.slice, &w.slice)
                    else {
                        candle_core::bail!("add + rms norm: inputs must share a dtype")
                    };
                    let (hs, ds, ws) = (
                        hs.slice(lh.start_offset()..),
                        ds.slice(ld.start_offset()..),
                        ws.slice(lw.start_offset()..),
                    );
                    // SAFETY: every element of both rows is written by the kernel.
                    let both = unsafe { dev.alloc::<$ty>(2 * cols)? };
                    let (sum, out) = (both.slice(..cols), both.slice(cols..));
                    let mut b = func.builder();
                    b.arg(&hs).arg(&ds).arg(&ws).arg(&sum).arg(&out);
                    b.arg(&cols_i).arg(&self.eps);
                    // SAFETY: matches add_rms_norm_* in kernels/fused_ops.cu; each operand
                    // holds cols elements.
                    unsafe { b.launch(cfg) }.w()?;
                    drop((sum, out));
                    CudaStorageSlice::$variant(both)
                }};
            }
            let slice = match h.dtype() {
                DType::BF16 => run!(BF16, half::bf16),
                DType::F16 => run!(F16, half::f16),
                _ => run!(F32, f32),
            };
            Ok((CudaStorage { slice, device: dev }, Shape::from((2, cols))))
        }
    }

    /// The GEMV of `w₀` (the op's first operand) and up to two more weights of the same
    /// width, their outputs following `w₀`'s.
    pub struct Gemv {
        pub more: Vec<candle_core::Tensor>,
    }

    impl candle_core::CustomOp2 for Gemv {
        fn name(&self) -> &'static str {
            "sdtp-gemv"
        }

        cuda_only!(2, "the one-row GEMV kernel");

        fn cuda_fwd(
            &self,
            w: &CudaStorage,
            lw: &Layout,
            x: &CudaStorage,
            lx: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = w.device().clone();
            let (rows0, cols) = lw.shape().dims2()?;
            let vec_elems = 16 / w.dtype().size_in_bytes();
            if lx.shape().elem_count() != cols
                || !lx.is_contiguous()
                || !lw.is_contiguous()
                || !(lx.start_offset() * w.dtype().size_in_bytes()).is_multiple_of(16)
                || !cols.is_multiple_of(vec_elems)
                || self.more.len() > 2
            {
                candle_core::bail!("gemv of {:?} by {:?}", lx.shape(), lw.shape());
            }
            // The other weights' storages, read-locked until the launch is queued.
            let guards: Vec<_> = self.more.iter().map(|t| t.storage_and_layout()).collect();
            let mut more_rows = Vec::new();
            for (storage, layout) in &guards {
                let (r, c) = layout.shape().dims2()?;
                if c != cols || !layout.is_contiguous() || layout.start_offset() != 0 {
                    candle_core::bail!(
                        "gemv: weights of {:?} and {:?}",
                        lw.shape(),
                        layout.shape()
                    );
                }
                if !matches!(&**storage, candle_core::Storage::Cuda(_)) {
                    candle_core::bail!("gemv: every weight must be on the CUDA device");
                }
                more_rows.push(r);
            }
            let rows1 = more_rows.first().copied().unwrap_or(0);
            let rows = rows0 + more_rows.iter().sum::<usize>();
            // Four rows a warp where that still leaves a few warps for every SM; one row a
            // warp for the small matrices (a GQA model's k and v projections).
            const WARPS: usize = 8;
            let per_warp = if rows >= 4 * WARPS * 132 * 2 { 4 } else { 1 };
            let suffix = dtype_suffix(w.dtype(), "gemv")?;
            let func = Kernel::load(&dev, PTX, &format!("gemv_{suffix}_r{per_warp}"), 0)?;
            let cfg = LaunchConfig {
                grid_dim: (rows.div_ceil(per_warp * WARPS) as u32, 1, 1),
                block_dim: (32 * WARPS as u32, 1, 1),
                shared_mem_bytes: 0,
            };
            let (rows0_i, rows1_i, rows_i, cols_i) =
                (rows0 as i32, rows1 as i32, rows as i32, cols as i32);
            macro_rules! run {
                ($variant:ident, $ty:ty) => {{
                    let (CudaStorageSlice::$variant(ws), CudaStorageSlice::$variant(xs)) =
                        (&w.slice, &x.slice)
                    else {
                        candle_core::bail!("gemv: weight and input must share a dtype")
                    };
                    let mut others = Vec::new();
                    for (storage, _) in &guards {
                        let candle_core::Storage::Cuda(s) = &**storage else {
                            candle_core::bail!("gemv: every weight must be on the CUDA device")
                        };
                        let CudaStorageSlice::$variant(o) = &s.slice else {
                            candle_core::bail!("gemv: weights must share a dtype")
                        };
                        others.push(o.slice(0..));
                    }
                    let w0 = ws.slice(lw.start_offset()..);
                    // Absent weights: w₀ again, never read (their row counts are 0).
                    let w1 = others.first().unwrap_or(&w0);
                    let w2 = others.get(1).unwrap_or(&w0);
                    let xs = xs.slice(lx.start_offset()..);
                    // SAFETY: every element is written by the kernel.
                    let out = unsafe { dev.alloc::<$ty>(rows)? };
                    let mut b = func.builder();
                    b.arg(&w0).arg(w1).arg(w2).arg(&xs).arg(&out);
                    b.arg(&rows0_i).arg(&rows1_i).arg(&rows_i).arg(&cols_i);
                    // SAFETY: matches gemv_* in kernels/fused_ops.cu; every weight is
                    // contiguous (rowsᵢ, cols), x holds cols elements, all 16-byte aligned.
                    unsafe { b.launch(cfg) }.w()?;
                    CudaStorageSlice::$variant(out)
                }};
            }
            let slice = match w.dtype() {
                DType::BF16 => run!(BF16, half::bf16),
                DType::F16 => run!(F16, half::f16),
                _ => run!(F32, f32),
            };
            Ok((CudaStorage { slice, device: dev }, Shape::from(rows)))
        }
    }

    pub struct GatherRows;

    impl candle_core::CustomOp2 for GatherRows {
        fn name(&self) -> &'static str {
            "sdtp-gather-rows"
        }

        cuda_only!(2, "the row-gather kernel");

        fn cuda_fwd(
            &self,
            x: &CudaStorage,
            lx: &Layout,
            index: &CudaStorage,
            li: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let dev = x.device().clone();
            let (_, _, cols) = lx.shape().dims3()?;
            let rows = li.shape().dims1()?;
            let CudaStorageSlice::U32(idx) = &index.slice else {
                candle_core::bail!("row gather: the index must be u32")
            };
            let idx = idx.slice(li.start_offset()..);
            let suffix = dtype_suffix(x.dtype(), "row gather")?;
            let func = Kernel::load(&dev, PTX, &format!("gather_rows_{suffix}"), 0)?;
            let cfg = LaunchConfig {
                grid_dim: ((rows * cols / 8).div_ceil(256).clamp(1, 8192) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let (rows_i, cols_i) = (rows as i32, cols as i32);
            macro_rules! run {
                ($variant:ident, $ty:ty) => {{
                    let CudaStorageSlice::$variant(src) = &x.slice else {
                        candle_core::bail!("row gather: dtype mismatch")
                    };
                    let src = src.slice(lx.start_offset()..);
                    // SAFETY: every element is written by the kernel.
                    let out = unsafe { dev.alloc::<$ty>(rows * cols)? };
                    let mut b = func.builder();
                    b.arg(&src).arg(&idx).arg(&out).arg(&rows_i).arg(&cols_i);
                    // SAFETY: matches gather_rows_* in kernels/fused_ops.cu; every index is
                    // below n (the prune selection returns positions of the current rows).
                    unsafe { b.launch(cfg) }.w()?;
                    CudaStorageSlice::$variant(out)
                }};
            }
            let slice = match x.dtype() {
                DType::BF16 => run!(BF16, half::bf16),
                _ => run!(F16, half::f16),
            };
            Ok((
                CudaStorage { slice, device: dev },
                Shape::from((1, rows, cols)),
            ))
        }
    }
}
