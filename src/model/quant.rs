//! Quantized weights: GGUF tensors kept in their block format and multiplied through candle's
//! `QMatMul`, plus the few byte-level operations our layer layout needs on them (undoing
//! llama.cpp's Q/K row order, stacking gate and up into one matrix, gathering embedding rows)
//! and random quantized weights of a published shape for speed and memory runs.
//!
//! Rows of a GGUF matrix are independent runs of blocks along the input dimension, so every
//! row-level operation is a copy of whole rows of bytes: no value is requantised by it.

use std::borrow::Cow;
use std::str::FromStr;

use anyhow::bail;
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

/// How a model's matrices are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsMode {
    /// GGUF block formats, multiplied as stored (or as a faster type of at least their precision).
    Quantized,
    /// Every matrix expanded to the run's dtype at load.
    Dequantized,
}

impl WeightsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quantized => "quantized",
            Self::Dequantized => "dequantized",
        }
    }
}

/// `--weights`: `auto` is quantized for GGUF files and `--quant` synthetic models, dequantized
/// for safetensors (which hold no quantized types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightsRequest {
    #[default]
    Auto,
    Quantized,
    Dequantized,
}

impl FromStr for WeightsRequest {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "quantized" => Ok(Self::Quantized),
            "dequantized" => Ok(Self::Dequantized),
            _ => bail!("unknown --weights {s:?}; use auto, quantized or dequantized"),
        }
    }
}

/// `--quant`: the block type of a synthetic model's random quantized weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticQuant(pub GgmlDType);

impl FromStr for SyntheticQuant {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q4_0" => Ok(Self(GgmlDType::Q4_0)),
            "q8_0" => Ok(Self(GgmlDType::Q8_0)),
            "q4_k" => Ok(Self(GgmlDType::Q4K)),
            _ => bail!("unknown --quant {s:?}; use q4_0, q8_0 or q4_k"),
        }
    }
}

/// GGUF's lower-case name of a block type ("q4_1", "q4_k", "f16").
pub fn type_name(dtype: GgmlDType) -> String {
    let name = format!("{dtype:?}").to_ascii_lowercase();
    // candle spells the k-quants "Q4K"; llama.cpp and every user say "q4_k".
    match name.strip_suffix('k') {
        Some(stem) if stem.len() == 2 => format!("{stem}_k"),
        _ => name,
    }
}

/// Whether a stored type is kept as a matrix in block form at all: float types are read densely.
pub fn is_block_type(dtype: GgmlDType) -> bool {
    !matches!(dtype, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)
}

/// The block type a stored type is multiplied as on `device`. candle's CPU kernels have SIMD dot
/// products for q4_0, q8_0 and the k-quants but only scalar loops for q4_1, q5_0 and q5_1;
/// those are widened to q8_0 (8 bits per value against their 4–5, so no information the
/// product uses is lost beyond q8_0's own rounding), which measured faster for prefill and
/// decode alike (docs/benchmarks.md). On CUDA every type has its own kernels and stays as stored.
pub fn runtime_type(stored: GgmlDType, device: &Device) -> GgmlDType {
    match stored {
        GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_1
            if device.is_cpu() =>
        {
            GgmlDType::Q8_0
        }
        other => other,
    }
}

/// Bytes of one row of `cols` values in block type `dtype`.
fn row_bytes(dtype: GgmlDType, cols: usize) -> Result<usize> {
    let block = dtype.block_size();
    if !cols.is_multiple_of(block) {
        candle_core::bail!(
            "rows of {cols} values do not divide into {} blocks of {block}",
            type_name(dtype)
        );
    }
    Ok(cols / block * dtype.type_size())
}

/// A host-side (rows, cols) block tensor as raw bytes: what the row operations work on before
/// the result is placed on its device.
pub struct HostBlocks {
    pub dtype: GgmlDType,
    pub rows: usize,
    pub cols: usize,
    pub bytes: Vec<u8>,
}

impl HostBlocks {
    /// The bytes of a (rows, cols) CPU QTensor.
    pub fn of(q: &QTensor) -> Result<Self> {
        let (rows, cols) = q.shape().dims2()?;
        let bytes = q.data()?.into_owned();
        let blocks = Self {
            dtype: q.dtype(),
            rows,
            cols,
            bytes,
        };
        if blocks.bytes.len() != rows * row_bytes(blocks.dtype, cols)? {
            candle_core::bail!(
                "quantized tensor of shape ({rows}, {cols}) holds {} bytes, not a whole number of rows",
                blocks.bytes.len()
            );
        }
        Ok(blocks)
    }

    fn row_len(&self) -> usize {
        self.bytes.len() / self.rows.max(1)
    }

    /// The rows in the order `src_row(i)` gives for output row i.
    pub fn permute_rows(&self, src_row: impl Fn(usize) -> usize) -> Self {
        let len = self.row_len();
        let mut bytes = Vec::with_capacity(self.bytes.len());
        for i in 0..self.rows {
            let s = src_row(i);
            bytes.extend_from_slice(&self.bytes[s * len..(s + 1) * len]);
        }
        Self { bytes, ..*self }
    }

    /// `self` over `other` (same type and width), as one matrix.
    pub fn stack(mut self, other: &Self) -> Result<Self> {
        if self.dtype != other.dtype || self.cols != other.cols {
            candle_core::bail!(
                "cannot stack a ({}, {}) {} matrix on a ({}, {}) {} one",
                other.rows,
                other.cols,
                type_name(other.dtype),
                self.rows,
                self.cols,
                type_name(self.dtype)
            );
        }
        self.bytes.extend_from_slice(&other.bytes);
        self.rows += other.rows;
        Ok(self)
    }

    /// The block tensor on `device`.
    pub fn to_qtensor(&self, device: &Device) -> Result<QTensor> {
        let storage = QStorage::from_data(Cow::Borrowed(&self.bytes), device, self.dtype)?;
        QTensor::new(storage, (self.rows, self.cols))
    }
}

/// llama.cpp's converter reorders each head's Q/K rows so that RoPE rotates adjacent pairs;
/// HF rotates halves. Row `i` of the HF order is row `src(i)` of the GGUF order: rows
/// (head, d/2, 2) -> (head, 2, d/2), the same map as `weights::unpermute_rope_rows`.
pub fn rope_source_row(i: usize, head_dim: usize) -> usize {
    let (head, within) = (i / head_dim, i % head_dim);
    let half = head_dim / 2;
    let (a, j) = (within / half, within % half);
    head * head_dim + 2 * j + a
}

/// A source of quantized matrices under HF names (a GGUF file, random synthetic blocks).
pub trait QuantSource {
    /// `hf_name`, a (rows, cols) matrix, as host blocks in HF row order and the stored type;
    /// `None` where the source holds it as floats (it is then read densely).
    fn blocks(&self, hf_name: &str, rows: usize, cols: usize) -> Result<Option<HostBlocks>>;
}

/// A matrix placed on its device for multiplication.
pub struct Placed {
    pub q: QTensor,
    /// Whether candle multiplies it with a tiled kernel (weights repacked once, many rows of
    /// input at a time); without one, long prefills expand the matrix instead (`Proj`).
    pub tiled: bool,
}

/// Whether this CPU has the 8-bit dot-product instructions candle's tiled q8_0 kernel needs.
fn cpu_has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512vnni")
            || std::arch::is_x86_feature_detected!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether candle's x86 CPU backend multiplies `dtype` (out_dim n, width k) with its repacked,
/// tiled kernels (candle-core `quantized/repack_x86.rs`: q4_k and q6_k, q8_0 with VNNI; 16
/// output rows per tile, 256-value superblocks). Those beat expanding the matrix at every
/// batch size; the others run one dot product per (input row, output) pair.
fn cpu_tiled(dtype: GgmlDType, n: usize, k: usize) -> bool {
    let shape_ok = n.is_multiple_of(16) && k.is_multiple_of(256);
    match dtype {
        GgmlDType::Q4K | GgmlDType::Q6K => shape_ok,
        GgmlDType::Q8_0 => shape_ok && cpu_has_vnni(),
        _ => false,
    }
}

/// `blocks` on `device` in the type they are multiplied as there ([`runtime_type`]).
///
/// Not done, by measurement: padding q8_0 rows of SmolLM2's width 576 to 768 so that candle's
/// tiled kernel takes them decodes faster, but that kernel quantises its input to 8 bits per
/// 256 values rather than per 32, and SmolLM2's outlier channels then cost top-1 agreement
/// with the f32 oracle (22/24 shipped prompts against 24/24 unpadded; docs/benchmarks.md).
pub fn place(blocks: &HostBlocks, device: &Device) -> Result<Placed> {
    let target = runtime_type(blocks.dtype, device);
    let converted;
    let blocks = if target == blocks.dtype {
        blocks
    } else {
        let dense = blocks.to_qtensor(&Device::Cpu)?.dequantize(&Device::Cpu)?;
        converted = HostBlocks::of(&QTensor::quantize(&dense, target)?)?;
        &converted
    };
    Ok(Placed {
        q: blocks.to_qtensor(device)?,
        tiled: device.is_cpu() && cpu_tiled(target, blocks.rows, blocks.cols),
    })
}

/// Embedding rows looked up in a quantized table: the gathered rows alone are expanded, so a
/// 128K-vocabulary table never exists as floats. The table's bytes live on the host (they are
/// gathered there); the tied lm_head, where there is one, is a separate device copy.
#[derive(Debug, Clone)]
pub struct QEmbedding {
    dtype: GgmlDType,
    dim: usize,
    row_len: usize,
    bytes: std::sync::Arc<Vec<u8>>,
    device: Device,
    out_dtype: DType,
}

impl QEmbedding {
    pub fn new(table: HostBlocks, device: &Device, out_dtype: DType) -> Self {
        Self {
            dtype: table.dtype,
            dim: table.cols,
            row_len: table.row_len(),
            bytes: std::sync::Arc::new(table.bytes),
            device: device.clone(),
            out_dtype,
        }
    }

    /// (len, dim) rows of `ids` in `out_dtype`.
    pub fn rows(&self, ids: &[u32]) -> Result<Tensor> {
        let vocab = self.bytes.len() / self.row_len.max(1);
        let mut gathered = Vec::with_capacity(ids.len() * self.row_len);
        for &id in ids {
            let id = id as usize;
            if id >= vocab {
                candle_core::bail!("token id {id} is outside the vocabulary of {vocab}");
            }
            gathered.extend_from_slice(&self.bytes[id * self.row_len..(id + 1) * self.row_len]);
        }
        let blocks = HostBlocks {
            dtype: self.dtype,
            rows: ids.len(),
            cols: self.dim,
            bytes: gathered,
        };
        blocks
            .to_qtensor(&self.device)?
            .dequantize(&self.device)?
            .to_dtype(self.out_dtype)
    }

    pub fn dtype(&self) -> GgmlDType {
        self.dtype
    }

    pub fn size_in_bytes(&self) -> usize {
        self.bytes.len()
    }
}

/// Random (rows, cols) blocks of `dtype` with values of standard deviation about `std`, for
/// synthetic models: random quants with their scale fields set, seeded so every load of a
/// preset is identical. Drawn as bytes, not quantised from floats, so an 8B model takes
/// seconds rather than minutes.
pub fn random_blocks(
    dtype: GgmlDType,
    rows: usize,
    cols: usize,
    std: f32,
    seed: u64,
) -> Result<HostBlocks> {
    use rand::{RngCore, SeedableRng};
    let len = rows * row_bytes(dtype, cols)?;
    let mut bytes = vec![0u8; len];
    rand::rngs::SmallRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    // Offsets of each block's f16 scale fields and the value that gives `std`: uniform quants
    // have a spread of ~4.6 (4-bit, centred) or ~74 (8-bit).
    let f16_fields: &[(usize, f32)] = match dtype {
        GgmlDType::Q4_0 => &[(0, std / 4.6)],
        GgmlDType::Q8_0 => &[(0, std / 74.0)],
        // q4_k: value = d·sc·q − dmin·m with 6-bit sc, m (mean ~31) and 4-bit q.
        GgmlDType::Q4K => &[(0, std / (36.0 * 4.6)), (2, std * 7.5 / (36.0 * 4.6))],
        other => candle_core::bail!("no random generator for {} blocks", type_name(other)),
    };
    let block_bytes = dtype.type_size();
    for block in bytes.chunks_exact_mut(block_bytes) {
        for &(offset, value) in f16_fields {
            block[offset..offset + 2].copy_from_slice(&half::f16::from_f32(value).to_le_bytes());
        }
    }
    Ok(HostBlocks {
        dtype,
        rows,
        cols,
        bytes,
    })
}

/// Checks that a synthetic model of these widths can hold `dtype` blocks: every row length
/// must be a whole number of blocks (the k-quants use 256-value superblocks).
pub fn check_block_widths(dtype: GgmlDType, widths: &[usize]) -> anyhow::Result<()> {
    let block = dtype.block_size();
    if let Some(bad) = widths.iter().find(|w| *w % block != 0) {
        bail!(
            "--quant {} needs every row length to be a multiple of {block}, but this model has rows of {bad}; use q4_0 or q8_0",
            type_name(dtype)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(rows: usize, cols: usize) -> Result<Tensor> {
        Tensor::arange(0f32, (rows * cols) as f32, &Device::Cpu)?
            .affine(1.0 / (rows * cols) as f64, -0.5)?
            .reshape((rows, cols))
    }

    #[test]
    fn names_follow_llama_cpp() {
        assert_eq!(type_name(GgmlDType::Q4_1), "q4_1");
        assert_eq!(type_name(GgmlDType::Q4K), "q4_k");
        assert_eq!(type_name(GgmlDType::Q6K), "q6_k");
        assert_eq!(type_name(GgmlDType::F16), "f16");
    }

    #[test]
    fn row_permutation_of_blocks_matches_the_dense_one() -> Result<()> {
        // llama.cpp's permutation applied to a dense matrix, quantised, then undone on the
        // blocks, must equal the dense matrix quantised directly: rows move whole.
        let (heads, d, cols) = (3, 8, 64);
        let w = ramp(heads * d, cols)?;
        let permuted = w
            .reshape((heads, 2, d / 2, cols))?
            .transpose(1, 2)?
            .reshape((heads * d, cols))?;
        let q = QTensor::quantize(&permuted, GgmlDType::Q8_0)?;
        let back = HostBlocks::of(&q)?.permute_rows(|i| rope_source_row(i, d));
        let direct = HostBlocks::of(&QTensor::quantize(&w, GgmlDType::Q8_0)?)?;
        assert_eq!(back.bytes, direct.bytes);
        Ok(())
    }

    #[test]
    fn stacked_blocks_dequantise_to_the_stacked_matrix() -> Result<()> {
        let (a, b) = (ramp(4, 64)?, ramp(6, 64)?.affine(2.0, 0.1)?);
        let qa = HostBlocks::of(&QTensor::quantize(&a, GgmlDType::Q4_0)?)?;
        let qb = HostBlocks::of(&QTensor::quantize(&b, GgmlDType::Q4_0)?)?;
        let stacked = qa.stack(&qb)?.to_qtensor(&Device::Cpu)?;
        assert_eq!(stacked.shape().dims2()?, (10, 64));
        let dense = stacked.dequantize(&Device::Cpu)?;
        let expect = Tensor::cat(
            &[
                &QTensor::quantize(&a, GgmlDType::Q4_0)?.dequantize(&Device::Cpu)?,
                &QTensor::quantize(&b, GgmlDType::Q4_0)?.dequantize(&Device::Cpu)?,
            ],
            0,
        )?;
        assert_eq!(dense.to_vec2::<f32>()?, expect.to_vec2::<f32>()?);
        let other = HostBlocks::of(&QTensor::quantize(&a, GgmlDType::Q8_0)?)?;
        assert!(HostBlocks::of(&QTensor::quantize(&a, GgmlDType::Q4_0)?)?
            .stack(&other)
            .is_err());
        Ok(())
    }

    #[test]
    fn embedding_rows_match_the_dequantised_table() -> Result<()> {
        let table = ramp(10, 64)?;
        let q = QTensor::quantize(&table, GgmlDType::Q4_1)?;
        let dense = q.dequantize(&Device::Cpu)?;
        let emb = QEmbedding::new(HostBlocks::of(&q)?, &Device::Cpu, DType::F32);
        let rows = emb.rows(&[3, 0, 9, 3])?;
        let ids = Tensor::new(&[3u32, 0, 9, 3], &Device::Cpu)?;
        assert_eq!(
            rows.to_vec2::<f32>()?,
            dense.index_select(&ids, 0)?.to_vec2::<f32>()?
        );
        assert!(emb.rows(&[10]).is_err());
        Ok(())
    }

    #[test]
    fn widening_to_q8_0_stays_within_its_rounding() -> Result<()> {
        let w = ramp(8, 64)?;
        let q41 = QTensor::quantize(&w, GgmlDType::Q4_1)?;
        let from = q41.dequantize(&Device::Cpu)?;
        let wide = place(&HostBlocks::of(&q41)?, &Device::Cpu)?;
        assert_eq!(wide.q.dtype(), GgmlDType::Q8_0);
        let to = wide.q.dequantize(&Device::Cpu)?.narrow(1, 0, 64)?;
        // q8_0 rounds each value to half a step of max|x|/127 of its block.
        let err = (to - &from)?.abs()?.max_all()?.to_scalar::<f32>()?;
        let step = from.abs()?.max_all()?.to_scalar::<f32>()? / 127.0;
        assert!(err <= 0.5 * step + 1e-6, "{err} > half of {step}");
        Ok(())
    }

    #[test]
    fn random_blocks_have_finite_values_of_the_asked_spread() -> Result<()> {
        for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0, GgmlDType::Q4K] {
            let blocks = random_blocks(dtype, 16, 512, 0.02, 7)?;
            let dense = blocks.to_qtensor(&Device::Cpu)?.dequantize(&Device::Cpu)?;
            let values = dense.flatten_all()?.to_vec1::<f32>()?;
            assert!(values.iter().all(|v| v.is_finite()), "{dtype:?}");
            let n = values.len() as f32;
            let mean = values.iter().sum::<f32>() / n;
            let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n).sqrt();
            assert!((0.01..0.04).contains(&std), "{dtype:?}: std {std}");
            let again = random_blocks(dtype, 16, 512, 0.02, 7)?;
            assert_eq!(blocks.bytes, again.bytes);
        }
        assert!(check_block_widths(GgmlDType::Q4K, &[4096, 576]).is_err());
        assert!(check_block_widths(GgmlDType::Q4_0, &[4096, 576]).is_ok());
        Ok(())
    }
}
