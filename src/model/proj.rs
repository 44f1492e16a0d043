//! A linear projection whose weight is either a dense tensor or quantized blocks, behind one
//! `forward`: the layer code does not know which it holds.

use candle_core::quantized::{GgmlDType, QMatMul};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::Linear;

use super::quant::type_name;

#[derive(Debug, Clone)]
pub enum Proj {
    Dense(Linear),
    Quantized {
        matmul: QMatMul,
        bias: Option<Tensor>,
        /// The type the file stored, where it differs from the one multiplied
        /// (see `quant::runtime_type`).
        stored: GgmlDType,
        /// Bytes the blocks take on the device.
        bytes: usize,
        /// Whether candle's CPU backend has a tiled kernel for it (`quant::Placed::tiled`).
        tiled: bool,
    },
    /// A large q4_0 matrix on the CPU, regrouped eight rows at a time (`cpu_q4x8`): decode
    /// runs on the groups, long prefills expand them (`cpu_dequant::matmul_grouped`).
    Grouped {
        weights: std::sync::Arc<super::cpu_q4x8::Q4x8>,
        bias: Option<Tensor>,
    },
}

/// Input rows from which a matmul without a tiled kernel runs faster on the expanded matrix
/// than on its blocks. CPU: measured on the 2-core development machine (`cargo bench --bench
/// quantized`), q8_0 576→1536 at 32 rows 2.5 ms either way, at 128 rows 9.4 ms on the blocks
/// against 4.4 ms expanded. CUDA: candle's quantized kernels quantise the input to 8 bits and
/// take 3.6× the time of cuBLAS bf16 for an 8B model's 4096-token prefill on the H200 (382 ms
/// against 107 ms); expanding costs one read of the blocks and one write of the bf16 matrix,
/// a few percent of that. The expansion is transient: one matrix at a time, so the model is
/// never held twice. Decode (one row) always runs on the blocks. CPU q4_0/q8_0 on AVX-512
/// (`cpu_dequant` against `cpu_qmatmul`, `cargo bench --bench quantized -- "q4_0 4096"`): 32
/// rows 17.7 ms expanded against 17.5 ms on the blocks, 512 rows 88 ms against 293 ms.
pub const EXPAND_FROM_ROWS: usize = 32;

impl Proj {
    /// `blocks` placed on `device` in the type they are multiplied as there
    /// (`quant::place`), remembering the type the file stored.
    pub fn from_blocks(
        blocks: &super::quant::HostBlocks,
        bias: Option<Tensor>,
        device: &Device,
    ) -> Result<Self> {
        if device.is_cpu() && super::cpu_q4x8::applies(blocks.dtype, blocks.rows, blocks.cols) {
            let grouped =
                super::cpu_q4x8::Q4x8::from_rows(&blocks.bytes, blocks.rows, blocks.cols)?;
            return Ok(Self::Grouped {
                weights: std::sync::Arc::new(grouped),
                bias,
            });
        }
        let placed = super::quant::place(blocks, device)?;
        let bytes = placed.q.storage_size_in_bytes();
        Ok(Self::Quantized {
            matmul: QMatMul::from_qtensor(placed.q)?,
            bias,
            stored: blocks.dtype,
            bytes,
            tiled: placed.tiled,
        })
    }

    /// Bytes of the weight (and bias) in memory.
    pub fn size_in_bytes(&self) -> usize {
        let tensor_bytes = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        match self {
            Self::Dense(l) => tensor_bytes(l.weight()) + l.bias().map_or(0, tensor_bytes),
            Self::Quantized { bytes, bias, .. } => bytes + bias.as_ref().map_or(0, tensor_bytes),
            Self::Grouped { weights, bias } => {
                weights.size_in_bytes() + bias.as_ref().map_or(0, tensor_bytes)
            }
        }
    }

    /// What the weight is held as: "f32", "q8_0", or "q4_1 as q8_0" when widened at load.
    pub fn kind(&self) -> String {
        match self {
            Self::Dense(l) => l.weight().dtype().as_str().to_string(),
            Self::Quantized {
                matmul: QMatMul::QTensor(q),
                stored,
                ..
            } if q.dtype() != *stored => {
                format!("{} as {}", type_name(*stored), type_name(q.dtype()))
            }
            Self::Quantized { stored, .. } => type_name(*stored),
            Self::Grouped { .. } => type_name(GgmlDType::Q4_0),
        }
    }

    /// Whether the weight is held in block form (quantized, however laid out).
    pub fn is_quantized(&self) -> bool {
        !matches!(self, Self::Dense(_))
    }
}

impl Proj {
    /// The weight of a dense projection without a bias: what a fused GEMV of several
    /// projections can read directly.
    pub fn plain_dense_weight(&self) -> Option<&Tensor> {
        match self {
            Self::Dense(l) if l.bias().is_none() => Some(l.weight()),
            _ => None,
        }
    }
}

/// Bytes of f32 weight rows the CPU expands at a time. Expanding a 7–8B model's matrices
/// whole (235 MB for a 14336 × 4096 one) had the allocator map fresh pages for every matrix
/// of every prefill, and the kernel zero them: an 8B q4_0 prefill of 32 tokens spent 38 s,
/// most of it clearing pages. A slab this size stays in the cache and its allocation is
/// reused.
const EXPAND_SLAB_BYTES: usize = 4 << 20;

/// `x · qᵀ` on `q` expanded to `x`'s dtype. CUDA expands the whole matrix (one read of the
/// blocks, one write of the bf16 matrix, then cuBLAS); the CPU expands a slab of output rows
/// at a time and multiplies it while it is in the cache.
fn expanded_matmul(q: &candle_core::quantized::QTensor, x: &Tensor) -> Result<Tensor> {
    let device = x.device();
    let (n, k) = q.shape().dims2()?;
    let slab_rows = (EXPAND_SLAB_BYTES / (4 * k.max(1))).max(16);
    if device.is_cuda() {
        let w = q.dequantize(device)?.to_dtype(x.dtype())?;
        return x.broadcast_matmul(&w.t()?);
    }
    if let Some(y) = super::cpu_dequant::matmul(&x.contiguous()?, q)? {
        return Ok(y);
    }
    let bytes = q.data()?;
    let row_bytes = bytes.len() / n.max(1);
    let mut parts = Vec::with_capacity(n.div_ceil(slab_rows));
    for start in (0..n).step_by(slab_rows) {
        let end = n.min(start + slab_rows);
        let slab = candle_core::quantized::QStorage::from_data(
            std::borrow::Cow::Borrowed(&bytes[start * row_bytes..end * row_bytes]),
            device,
            q.dtype(),
        )?;
        let w = candle_core::quantized::QTensor::new(slab, (end - start, k))?.dequantize(device)?;
        parts.push(x.broadcast_matmul(&w.to_dtype(x.dtype())?.t()?)?);
    }
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    Tensor::cat(&parts, candle_core::D::Minus1)
}

impl Module for Proj {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dense(l) => match super::fused::try_gemv(x, &[l.weight()])? {
                Some(y) => match l.bias() {
                    Some(bias) => y.broadcast_add(bias),
                    None => Ok(y),
                },
                None => l.forward(x),
            },
            Self::Quantized {
                matmul,
                bias,
                tiled,
                ..
            } => {
                let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?.max(1);
                let y = match matmul {
                    QMatMul::QTensor(q)
                        if rows >= EXPAND_FROM_ROWS && (x.device().is_cuda() || !tiled) =>
                    {
                        expanded_matmul(q, x)?
                    }
                    QMatMul::QTensor(q) if !tiled && super::cpu_qmatmul::applies_to(q) => {
                        let x = x.contiguous()?;
                        match super::cpu_qmatmul::matmul(&x, q)? {
                            Some(y) => y,
                            None => quantized_forward(matmul, &x)?,
                        }
                    }
                    _ => quantized_forward(matmul, &x.contiguous()?)?,
                };
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
            Self::Grouped { weights, bias } => {
                let rows = x.elem_count() / x.dim(candle_core::D::Minus1)?.max(1);
                let y = if rows >= EXPAND_FROM_ROWS {
                    super::cpu_dequant::matmul_grouped(x, weights)?
                } else {
                    weights.products(&x.contiguous()?)?
                };
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }
}

/// candle's quantized matmul of a contiguous input: its kernels take f32/f16/bf16, so only
/// f64 needs a detour.
fn quantized_forward(matmul: &QMatMul, x: &Tensor) -> Result<Tensor> {
    if x.dtype() == DType::F64 {
        matmul
            .forward(&x.to_dtype(DType::F32)?)?
            .to_dtype(DType::F64)
    } else {
        matmul.forward(x)
    }
}
