//! Weight sources, all answering to HF tensor names: GGUF files (dequantised behind candle's
//! `VarBuilder`, or as blocks for quantized runs; llama.cpp's Q/K row order undone either way)
//! and synthetic random weights (floats, or blocks of a `--quant` type). Safetensors folders
//! use candle's own mmaped backend.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;

use super::config::ModelConfig;
use super::quant::{is_block_type, random_blocks, rope_source_row, HostBlocks, QuantSource};

/// Tensors of a llama-architecture GGUF file, served under HF names. Cheap to clone: clones
/// share the open file and the parsed header.
#[derive(Clone)]
pub struct GgufWeights {
    path: PathBuf,
    file: Arc<Mutex<File>>,
    content: Arc<gguf_file::Content>,
    num_heads: usize,
    num_kv_heads: usize,
}

impl GgufWeights {
    pub fn new(
        path: &Path,
        content: gguf_file::Content,
        cfg: &ModelConfig,
    ) -> anyhow::Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
            content: Arc::new(content),
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
        })
    }

    pub fn content(&self) -> &gguf_file::Content {
        &self.content
    }

    /// HF names of every tensor the file holds (those we know how to map).
    pub fn hf_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .content
            .tensor_infos
            .keys()
            .filter_map(|g| gguf_to_hf_name(g))
            .collect();
        names.sort();
        names
    }

    /// The tensor `hf_name` as stored, read onto `device` (llama.cpp's row order).
    fn read(&self, hf_name: &str, device: &Device) -> Result<QTensor> {
        let gguf_name = hf_to_gguf_name(hf_name).ok_or_else(|| {
            candle_core::Error::Msg(format!("no GGUF tensor corresponds to {hf_name}"))
        })?;
        let qtensor = {
            let mut file = self
                .file
                .lock()
                .map_err(|_| candle_core::Error::Msg("GGUF reader lock poisoned".into()))?;
            self.content
                .tensor(&mut *file, &gguf_name, device)
                .map_err(|e| {
                    candle_core::Error::Msg(format!(
                        "cannot read tensor {gguf_name} from {}: {e}",
                        self.path.display()
                    ))
                })?
        };
        Ok(qtensor)
    }

    /// The tensor `hf_name` dequantised to f32 on `device`, in HF row order.
    pub fn tensor(&self, hf_name: &str, device: &Device) -> Result<Tensor> {
        let tensor = self.read(hf_name, device)?.dequantize(device)?;
        if hf_name.ends_with("q_proj.weight") {
            unpermute_rope_rows(&tensor, self.num_heads)
        } else if hf_name.ends_with("k_proj.weight") {
            unpermute_rope_rows(&tensor, self.num_kv_heads)
        } else {
            Ok(tensor)
        }
    }
}

/// llama.cpp's converter reorders each head's Q/K rows so that RoPE rotates adjacent pairs
/// (x0,x1),(x2,x3)…; HF rotates halves (x0,x_{d/2}),…. This restores the HF order so one
/// RoPE implementation serves both formats: rows (head, d/2, 2) -> (head, 2, d/2).
fn unpermute_rope_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let head_dim = rows / heads;
    w.reshape((heads, head_dim / 2, 2, cols))?
        .transpose(1, 2)?
        .reshape((rows, cols))
}

impl QuantSource for GgufWeights {
    fn blocks(&self, hf_name: &str, rows: usize, cols: usize) -> Result<Option<HostBlocks>> {
        let q = self.read(hf_name, &Device::Cpu)?;
        if !is_block_type(q.dtype()) {
            return Ok(None);
        }
        let blocks = HostBlocks::of(&q)?;
        if (blocks.rows, blocks.cols) != (rows, cols) {
            candle_core::bail!(
                "tensor {hf_name} in {} has shape ({}, {}) but the model config implies ({rows}, {cols})",
                self.path.display(),
                blocks.rows,
                blocks.cols
            );
        }
        let heads = if hf_name.ends_with("q_proj.weight") {
            self.num_heads
        } else if hf_name.ends_with("k_proj.weight") {
            self.num_kv_heads
        } else {
            return Ok(Some(blocks));
        };
        let head_dim = rows / heads;
        Ok(Some(blocks.permute_rows(|i| rope_source_row(i, head_dim))))
    }
}

impl SimpleBackend for GgufWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let tensor = self.get_unchecked(name, dtype, dev)?;
        if tensor.shape() != &s {
            candle_core::bail!(
                "tensor {name} in {} has shape {:?} but the model config implies {:?}",
                self.path.display(),
                tensor.dims(),
                s.dims()
            );
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.tensor(name, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        hf_to_gguf_name(name).is_some_and(|g| self.content.tensor_infos.contains_key(&g))
    }
}

/// (HF suffix inside a layer, llama.cpp suffix inside a block).
const LAYER_NAMES: &[(&str, &str)] = &[
    ("self_attn.q_proj.weight", "attn_q.weight"),
    ("self_attn.k_proj.weight", "attn_k.weight"),
    ("self_attn.v_proj.weight", "attn_v.weight"),
    ("self_attn.o_proj.weight", "attn_output.weight"),
    ("self_attn.q_proj.bias", "attn_q.bias"),
    ("self_attn.k_proj.bias", "attn_k.bias"),
    ("self_attn.v_proj.bias", "attn_v.bias"),
    ("mlp.gate_proj.weight", "ffn_gate.weight"),
    ("mlp.up_proj.weight", "ffn_up.weight"),
    ("mlp.down_proj.weight", "ffn_down.weight"),
    ("input_layernorm.weight", "attn_norm.weight"),
    ("post_attention_layernorm.weight", "ffn_norm.weight"),
];

const GLOBAL_NAMES: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "token_embd.weight"),
    ("model.norm.weight", "output_norm.weight"),
    ("lm_head.weight", "output.weight"),
];

pub(crate) fn hf_to_gguf_name(hf: &str) -> Option<String> {
    if let Some((_, g)) = GLOBAL_NAMES.iter().find(|(h, _)| *h == hf) {
        return Some(g.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (_, g) = LAYER_NAMES.iter().find(|(h, _)| *h == suffix)?;
    Some(format!("blk.{layer}.{g}"))
}

fn gguf_to_hf_name(gguf: &str) -> Option<String> {
    if let Some((h, _)) = GLOBAL_NAMES.iter().find(|(_, g)| *g == gguf) {
        return Some(h.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (h, _) = LAYER_NAMES.iter().find(|(_, g)| *g == suffix)?;
    Some(format!("model.layers.{layer}.{h}"))
}

/// Random weights of a published shape, made on the device itself: norms at 1, biases at 0,
/// matrices N(0, 0.02²) as in the models' own initialisation. Only for speed measurement.
pub struct SyntheticWeights {
    seed: u64,
    cache: Mutex<HashMap<String, Tensor>>,
}

impl SyntheticWeights {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl SimpleBackend for SyntheticWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| candle_core::Error::Msg("synthetic weight lock poisoned".into()))?;
        // Tied embeddings ask for the same name twice: hand out the same tensor.
        if let Some(t) = cache.get(name) {
            return Ok(t.clone());
        }
        let tensor = if name.ends_with("norm.weight") {
            Tensor::ones(s, dtype, dev)?
        } else if name.ends_with(".bias") {
            Tensor::zeros(s, dtype, dev)?
        } else {
            random_normal(s, self.seed ^ fxhash(name), dtype, dev)?
        };
        cache.insert(name.to_string(), tensor.clone());
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle_core::bail!("synthetic weights need a shape for {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Random blocks of one type for every matrix of a synthetic model (norms and biases stay
/// with [`SyntheticWeights`]): the `--quant` shapes that measure quantized speed and memory.
pub struct SyntheticQuantWeights {
    pub seed: u64,
    pub dtype: GgmlDType,
}

impl QuantSource for SyntheticQuantWeights {
    fn blocks(&self, hf_name: &str, rows: usize, cols: usize) -> Result<Option<HostBlocks>> {
        random_blocks(self.dtype, rows, cols, 0.02, self.seed ^ fxhash(hf_name)).map(Some)
    }
}

/// N(0, 0.02²) values, seeded per tensor so every load of a preset is identical. CUDA
/// draws on the device (a 7B model would take minutes on the host); candle's CPU generator
/// cannot be seeded, so the host draws there.
fn random_normal(shape: Shape, seed: u64, dtype: DType, dev: &Device) -> Result<Tensor> {
    if dev.is_cuda() {
        dev.set_seed(seed)?;
        return Tensor::randn(0f32, 0.02, shape, dev)?.to_dtype(dtype);
    }
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let normal =
        rand_distr::Normal::new(0f32, 0.02).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let values: Vec<f32> = (0..shape.elem_count())
        .map(|_| normal.sample(&mut rng))
        .collect();
    Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)
}

/// FNV-1a: a stable per-name seed (std's hasher is randomised per process).
fn fxhash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for hf in [
            "model.embed_tokens.weight",
            "model.layers.7.self_attn.k_proj.weight",
            "model.layers.29.mlp.down_proj.weight",
            "model.layers.0.post_attention_layernorm.weight",
        ] {
            let g = hf_to_gguf_name(hf).unwrap();
            assert_eq!(gguf_to_hf_name(&g).unwrap(), hf);
        }
        assert_eq!(
            hf_to_gguf_name("model.layers.3.self_attn.o_proj.weight").unwrap(),
            "blk.3.attn_output.weight"
        );
        assert!(hf_to_gguf_name("model.layers.x.mlp.up_proj.weight").is_none());
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() -> Result<()> {
        // llama.cpp: w.reshape(heads, 2, d/2, cols).swapaxes(1, 2).reshape(rows, cols)
        let (heads, d, cols) = (3, 8, 5);
        let w = Tensor::arange(0f32, (heads * d * cols) as f32, &Device::Cpu)?
            .reshape((heads * d, cols))?;
        let permuted = w
            .reshape((heads, 2, d / 2, cols))?
            .transpose(1, 2)?
            .reshape((heads * d, cols))?;
        let back = unpermute_rope_rows(&permuted, heads)?;
        assert_eq!(back.to_vec2::<f32>()?, w.to_vec2::<f32>()?);
        Ok(())
    }
}
