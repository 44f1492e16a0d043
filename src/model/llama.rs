//! Our Llama-family model (Llama 2/3, Mistral, Qwen2, SmolLM2): public layers that take an
//! explicit positions tensor, so the pruned prefill can run them one by one.
//!
//! Weight names follow the HF checkpoints (`model.layers.{i}.self_attn.q_proj`); the GGUF
//! backend maps llama.cpp's names onto them.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, RmsNorm, VarBuilder};

use std::sync::Arc;

use super::attention;
use super::cache::LayerCache;
use super::config::ModelConfig;
use super::proj::Proj;
use super::quant::{QEmbedding, QuantSource};
use super::rope::RotaryEmbedding;
use super::text::SentenceEnds;

// Defined in the leaf `kernels` module, which the ops import; part of the model's API here.
pub use super::kernels::Kernels;

/// Token positions of the rows of a hidden-state tensor, with their RoPE angles.
#[derive(Debug, Clone)]
pub struct Positions {
    ids: Vec<u32>,
    cos: Tensor,
    sin: Tensor,
}

impl Positions {
    pub fn new(
        ids: Vec<u32>,
        rope: &RotaryEmbedding,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let tensor = Tensor::new(ids.as_slice(), device)?;
        let (cos, sin) = rope.cos_sin(&tensor, dtype)?;
        Ok(Self { ids, cos, sin })
    }

    /// The rows `kept` of these positions (`index` is `kept` as a u32 tensor on the device):
    /// the angles are gathered, not recomputed.
    pub fn select(&self, kept: &[usize], index: &Tensor) -> Result<Self> {
        Ok(Self {
            ids: kept.iter().map(|&i| self.ids[i]).collect(),
            cos: self.cos.index_select(index, 0)?,
            sin: self.sin.index_select(index, 0)?,
        })
    }

    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// RmsNorm with the kernel `kernels` asks for.
fn rms_norm(norm: &RmsNorm, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
    match kernels {
        Kernels::Fast => norm.forward(x),
        Kernels::Differentiable => norm.forward_diff(x),
    }
}

/// What a device-resident decode step reads on the device: the u32 buffer
/// `[token, position, len_0, len_1, …]` (len_i: entries in layer i's cache before the step)
/// and the RoPE angles of that position, computed from it on the device, so that nothing the
/// step launches depends on a value known only to the host.
#[derive(Debug, Clone)]
pub struct ResidentInputs {
    tensor: Tensor,
    cos: Tensor,
    sin: Tensor,
}

// The layout is written on every build (the decode loop fills it); read only by the CUDA
// step.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
impl ResidentInputs {
    const TOKEN: usize = 0;
    const POSITION: usize = 1;
    const FIRST_LEN: usize = 2;

    /// The buffer's values for one step: the token to run, its position and each layer's
    /// cache length.
    pub fn values(token: u32, position: u32, lens: &[usize]) -> Vec<u32> {
        let mut values = vec![token, position];
        values.extend(lens.iter().map(|&len| len as u32));
        values
    }

    /// Index of layer `layer`'s length in the buffer.
    pub fn slot(layer: usize) -> usize {
        Self::FIRST_LEN + layer
    }

    fn new(tensor: &Tensor, rope: &RotaryEmbedding, dtype: DType) -> Result<Self> {
        let (cos, sin) = rope.cos_sin(&tensor.narrow(0, Self::POSITION, 1)?, dtype)?;
        Ok(Self {
            tensor: tensor.clone(),
            cos,
            sin,
        })
    }

    /// (1, 1) u32: the token, as the embedding looks it up.
    fn token(&self) -> Result<Tensor> {
        self.tensor.narrow(0, Self::TOKEN, 1)?.unsqueeze(0)
    }

    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }

    pub fn cos_sin(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }
}

/// What a layer's forward returns besides its output.
pub struct LayerOutput {
    /// (1, len, hidden)
    pub hidden: Tensor,
    /// Mean attention (n,) f32 each token got from the last queries, when it was asked for.
    pub tail_attention: Option<Tensor>,
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Proj,
    k_proj: Proj,
    v_proj: Proj,
    o_proj: Proj,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

/// Where the matrices come from: `vb` for dense weights (and every norm and bias), `quant`
/// for the matrices a quantized run keeps in block form.
#[derive(Clone, Copy)]
pub struct WeightSources<'a> {
    pub quant: Option<&'a dyn QuantSource>,
}

impl WeightSources<'_> {
    /// The matrix `vb`/weight of (out_dim, in_dim) in block form, when the run is quantized
    /// and the source holds it quantized.
    fn blocks(
        &self,
        vb: &VarBuilder,
        out_dim: usize,
        in_dim: usize,
    ) -> Result<Option<super::quant::HostBlocks>> {
        match self.quant {
            Some(q) => q.blocks(&format!("{}.weight", vb.prefix()), out_dim, in_dim),
            None => Ok(None),
        }
    }

    fn proj(&self, in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Proj> {
        match self.blocks(&vb, out_dim, in_dim)? {
            Some(blocks) => {
                let bias = if bias {
                    Some(vb.get(out_dim, "bias")?)
                } else {
                    None
                };
                Proj::from_blocks(&blocks, bias, vb.device())
            }
            None if bias => Ok(Proj::Dense(candle_nn::linear(in_dim, out_dim, vb)?)),
            None => Ok(Proj::Dense(candle_nn::linear_no_bias(in_dim, out_dim, vb)?)),
        }
    }
}

impl Attention {
    fn load(vb: VarBuilder, cfg: &ModelConfig, src: WeightSources) -> Result<Self> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let q_out = cfg.num_attention_heads * d;
        let kv_out = cfg.num_key_value_heads * d;
        let bias = cfg.attention_bias;
        Ok(Self {
            q_proj: src.proj(h, q_out, bias, vb.pp("q_proj"))?,
            k_proj: src.proj(h, kv_out, bias, vb.pp("k_proj"))?,
            v_proj: src.proj(h, kv_out, bias, vb.pp("v_proj"))?,
            o_proj: src.proj(q_out, h, false, vb.pp("o_proj"))?,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_key_value_heads,
            head_dim: d,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        positions: &Positions,
        rope: &RotaryEmbedding,
        cache: &mut LayerCache,
        tail_queries: Option<usize>,
        kernels: Kernels,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (b, t, _) = x.dims3()?;
        let (q, k, v) = if kernels == Kernels::Fast && x.device().is_cuda() {
            // On CUDA: the attention kernels read q through its strides, and k and v reach
            // the cache's (b, heads, t, d) layout through one coalesced copy each (candle's
            // generic strided copy of a transposed view runs at a fraction of the bandwidth).
            let (q, k, v) = self.project_seq_major(x, &positions.cos, &positions.sin, rope)?;
            (
                q.transpose(1, 2)?,
                super::fused::to_heads_major(&k)?,
                super::fused::to_heads_major(&v)?,
            )
        } else {
            let heads = |proj: &Proj, n: usize| -> Result<Tensor> {
                proj.forward(x)?
                    .reshape((b, t, n, self.head_dim))?
                    .transpose(1, 2)
            };
            let rotate = |x: &Tensor| rope.apply_with(x, &positions.cos, &positions.sin, kernels);
            (
                rotate(&heads(&self.q_proj, self.num_heads)?)?,
                rotate(&heads(&self.k_proj, self.num_kv_heads)?)?,
                heads(&self.v_proj, self.num_kv_heads)?,
            )
        };
        let cached = cache.len();
        let (mut k_all, mut v_all) = cache.append(&k, &v, positions.ids())?;
        if kernels == Kernels::Differentiable {
            // The cache's buffer was filled in place: rebuild the same values from the
            // tracked k and v so the gradient flows through keys and values too.
            (k_all, v_all) = if cached == 0 {
                (k.clone(), v.clone())
            } else {
                (
                    Tensor::cat(&[&k_all.narrow(2, 0, cached)?, &k], 2)?,
                    Tensor::cat(&[&v_all.narrow(2, 0, cached)?, &v], 2)?,
                )
            };
        }
        let (y, tail) = match kernels {
            Kernels::Fast => {
                attention::causal_attention_and_tail(&q, &k_all, &v_all, tail_queries)?
            }
            Kernels::Differentiable => (
                attention::causal_attention_with(&q, &k_all, &v_all, Kernels::Differentiable)?,
                tail_queries
                    .map(|m| attention::tail_attention(&q, &k_all, m))
                    .transpose()?,
            ),
        };
        let y = y
            .transpose(1, 2)?
            .reshape((b, t, self.num_heads * self.head_dim))?;
        Ok((self.o_proj.forward(&y)?, tail))
    }
}

impl Attention {
    /// q (b, t, heads, d) and k (b, t, kv_heads, d) rotated by `cos`/`sin`, and v
    /// (b, t, kv_heads, d): the projections in their token-major output layout, where
    /// candle's fused RoPE kernel rotates them without a transposed copy.
    fn project_seq_major(
        &self,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        rope: &RotaryEmbedding,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (b, t, _) = x.dims3()?;
        let d = self.head_dim;
        let (q, k, v) = match self.one_row_qkv(x)? {
            Some(qkv) => qkv,
            None => (
                self.q_proj.forward(x)?,
                self.k_proj.forward(x)?,
                self.v_proj.forward(x)?,
            ),
        };
        let q = rope.apply_seq_major(&q.reshape((b, t, self.num_heads, d))?, cos, sin)?;
        let k = rope.apply_seq_major(&k.reshape((b, t, self.num_kv_heads, d))?, cos, sin)?;
        Ok((q, k, v.reshape((b, t, self.num_kv_heads, d))?))
    }

    /// q, k and v of a single row through one GEMV launch over the three weights (each
    /// output the same as its own projection's), where the projections are dense without a
    /// bias and the GEMV applies.
    fn one_row_qkv(&self, x: &Tensor) -> Result<Option<(Tensor, Tensor, Tensor)>> {
        let (Some(wq), Some(wk), Some(wv)) = (
            self.q_proj.plain_dense_weight(),
            self.k_proj.plain_dense_weight(),
            self.v_proj.plain_dense_weight(),
        ) else {
            return Ok(None);
        };
        let Some(qkv) = super::fused::try_gemv(x, &[wq, wk, wv])? else {
            return Ok(None);
        };
        let (hq, hk) = (wq.dim(0)?, wk.dim(0)?);
        let last = candle_core::D::Minus1;
        Ok(Some((
            qkv.narrow(last, 0, hq)?,
            qkv.narrow(last, hq, hk)?,
            qkv.narrow(last, hq + hk, hk)?,
        )))
    }

    /// One decode token `x` (1, 1, hidden) with its lengths on the device: its keys and
    /// values go into `cache`'s buffers at entry `inputs[slot]`, and it attends to the
    /// entries before that and itself. Nothing here depends on a host-side length, so the
    /// launches replay from a CUDA graph.
    #[cfg(feature = "cuda")]
    fn forward_resident(
        &self,
        x: &Tensor,
        rope: &RotaryEmbedding,
        cache: &LayerCache,
        resident: &ResidentInputs,
        slot: usize,
    ) -> Result<Tensor> {
        use super::decode_attention::{cache_write, decode_attention};
        let (cos, sin) = resident.cos_sin();
        let (q, k, v) = self.project_seq_major(x, cos, sin, rope)?;
        let Some((k_cache, v_cache)) = cache.buffers() else {
            candle_core::bail!("device-resident decode over an empty layer cache");
        };
        // One token: (1, 1, kv_heads, d) is (1, kv_heads, 1, d) in memory.
        let (kv, d) = (self.num_kv_heads, self.head_dim);
        cache_write(k_cache, &k.reshape((1, kv, 1, d))?, resident.tensor(), slot)?;
        cache_write(v_cache, &v.reshape((1, kv, 1, d))?, resident.tensor(), slot)?;
        let q = q.reshape((1, self.num_heads, 1, d))?;
        let y = decode_attention(&q, k_cache, v_cache, resident.tensor(), slot)?;
        self.o_proj.forward(&y.reshape((1, 1, self.num_heads * d))?)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_up: GateUp,
    down_proj: Proj,
    intermediate: usize,
}

/// gate_proj and up_proj stacked into one (2·intermediate, hidden) weight: one GEMM instead of
/// two, each output row holding [gate | up]. Quantized files may store the two in different
/// block types (llama.cpp's mixed presets); those stay two matrices.
#[derive(Debug, Clone)]
enum GateUp {
    Stacked(Proj),
    Split { gate: Proj, up: Proj },
}

impl Mlp {
    fn load(vb: VarBuilder, cfg: &ModelConfig, src: WeightSources) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let (gate_vb, up_vb) = (vb.pp("gate_proj"), vb.pp("up_proj"));
        let gate_up = match (src.blocks(&gate_vb, i, h)?, src.blocks(&up_vb, i, h)?) {
            (Some(gate), Some(up)) if gate.dtype == up.dtype => {
                GateUp::Stacked(Proj::from_blocks(&gate.stack(&up)?, None, vb.device())?)
            }
            (None, None) => {
                let gate = gate_vb.get((i, h), "weight")?;
                let up = up_vb.get((i, h), "weight")?;
                GateUp::Stacked(Proj::Dense(Linear::new(
                    Tensor::cat(&[&gate, &up], 0)?,
                    None,
                )))
            }
            _ => GateUp::Split {
                gate: src.proj(h, i, false, gate_vb)?,
                up: src.proj(h, i, false, up_vb)?,
            },
        };
        Ok(Self {
            gate_up,
            down_proj: src.proj(i, h, false, vb.pp("down_proj"))?,
            intermediate: i,
        })
    }

    fn projs(&self) -> Vec<&Proj> {
        match &self.gate_up {
            GateUp::Stacked(p) => vec![p, &self.down_proj],
            GateUp::Split { gate, up } => vec![gate, up, &self.down_proj],
        }
    }

    fn forward(&self, x: &Tensor, kernels: Kernels) -> Result<Tensor> {
        let (gate, up) = match &self.gate_up {
            GateUp::Stacked(p) => {
                let gate_up = p.forward(x)?;
                let i = self.intermediate;
                (gate_up.narrow(2, 0, i)?, gate_up.narrow(2, i, i)?)
            }
            GateUp::Split { gate, up } => (gate.forward(x)?, up.forward(x)?),
        };
        self.down_proj
            .forward(&super::fused::silu_mul(&gate, &up, kernels)?)
    }
}

/// The weights of one transformer block, as [`Llama`] stores them.
#[derive(Debug, Clone)]
struct LayerWeights {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl LayerWeights {
    fn load(vb: VarBuilder, cfg: &ModelConfig, src: WeightSources) -> Result<Self> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(Self {
            input_layernorm: candle_nn::rms_norm(h, eps, vb.pp("input_layernorm"))?,
            self_attn: Attention::load(vb.pp("self_attn"), cfg, src)?,
            post_attention_layernorm: candle_nn::rms_norm(
                h,
                eps,
                vb.pp("post_attention_layernorm"),
            )?,
            mlp: Mlp::load(vb.pp("mlp"), cfg, src)?,
        })
    }
}

/// One transformer block of a [`Llama`]: pre-norm attention and pre-norm SwiGLU MLP with
/// residuals. Borrowed from the model by [`Llama::layers`], it runs the model's [`Kernels`],
/// which the model alone stores.
#[derive(Debug, Clone, Copy)]
pub struct DecoderLayer<'a> {
    weights: &'a LayerWeights,
    kernels: Kernels,
}

impl DecoderLayer<'_> {
    /// Runs the block on `hidden` (1, len, hidden) whose rows sit at `positions`, appending
    /// their keys and values to `cache`; the new rows attend causally to everything cached.
    /// With `tail_queries = Some(m)` it also returns the attention the last m queries paid
    /// to each cached token.
    pub fn forward(
        &self,
        hidden: &Tensor,
        positions: &Positions,
        rope: &RotaryEmbedding,
        cache: &mut LayerCache,
        tail_queries: Option<usize>,
    ) -> Result<LayerOutput> {
        let attended = self.attend(hidden, positions, rope, cache, tail_queries)?;
        Ok(LayerOutput {
            hidden: self.feed_forward(&attended.hidden)?,
            tail_attention: attended.tail_attention,
        })
    }

    /// The first half of [`DecoderLayer::forward`]: pre-norm attention and its residual. Its
    /// `hidden` is the input of [`DecoderLayer::feed_forward`]. Split out so that the pruned
    /// prefill can read the scorer's attention before the MLP is queued, and choose the kept
    /// tokens on the host while the device runs the MLP.
    pub fn attend(
        &self,
        hidden: &Tensor,
        positions: &Positions,
        rope: &RotaryEmbedding,
        cache: &mut LayerCache,
        tail_queries: Option<usize>,
    ) -> Result<LayerOutput> {
        let layer = self.weights;
        let (attn, tail_attention) = layer.self_attn.forward(
            &rms_norm(&layer.input_layernorm, hidden, self.kernels)?,
            positions,
            rope,
            cache,
            tail_queries,
            self.kernels,
        )?;
        Ok(LayerOutput {
            hidden: (hidden + attn)?,
            tail_attention,
        })
    }

    /// The second half of [`DecoderLayer::forward`]: pre-norm SwiGLU MLP and its residual.
    pub fn feed_forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let layer = self.weights;
        let mlp = layer.mlp.forward(
            &rms_norm(&layer.post_attention_layernorm, hidden, self.kernels)?,
            self.kernels,
        )?;
        hidden + mlp
    }

    /// [`DecoderLayer::forward`] of one decode token whose cache length and position are on
    /// the device (`resident`, this layer's length at `slot`); the cache's buffers must have
    /// room for the new entry, and the caller records it ([`LayerCache::note_written`]).
    /// The residual adds are fused with the norms after them: the block takes the residual
    /// stream and the previous block's MLP output not yet added to it (`None` for the first
    /// block), and returns the same pair for the next block.
    #[cfg(feature = "cuda")]
    pub fn forward_resident(
        &self,
        residual: &Tensor,
        delta: Option<&Tensor>,
        rope: &RotaryEmbedding,
        cache: &LayerCache,
        resident: &ResidentInputs,
        slot: usize,
    ) -> Result<(Tensor, Tensor)> {
        use super::fused::add_rms_norm;
        let layer = self.weights;
        let (hidden, x) = match delta {
            Some(delta) => add_rms_norm(residual, delta, &layer.input_layernorm)?,
            None => (
                residual.clone(),
                rms_norm(&layer.input_layernorm, residual, self.kernels)?,
            ),
        };
        let attn = layer
            .self_attn
            .forward_resident(&x, rope, cache, resident, slot)?;
        let (hidden, x) = add_rms_norm(&hidden, &attn, &layer.post_attention_layernorm)?;
        Ok((hidden, layer.mlp.forward(&x, self.kernels)?))
    }
}

/// The token embedding: a dense table, or quantized rows expanded as they are looked up.
#[derive(Debug, Clone)]
enum Embed {
    Dense(Embedding),
    Quantized(QEmbedding),
}

#[derive(Debug, Clone)]
pub struct Llama {
    embed_tokens: Embed,
    layers: Vec<LayerWeights>,
    norm: RmsNorm,
    lm_head: Proj,
    rope: RotaryEmbedding,
    config: ModelConfig,
    dtype: DType,
    device: Device,
    kernels: Kernels,
    /// Which token ids end a sentence, from the tokenizer the model was loaded with; `None`
    /// until the loader sets it (scorers that keep sentences whole then work per token).
    sentence_ends: Option<Arc<SentenceEnds>>,
}

impl Llama {
    /// Loads the model's weights from `vb`, the matrices from `quant` where one is given.
    pub fn load(
        vb: VarBuilder,
        cfg: &ModelConfig,
        quant: Option<&dyn QuantSource>,
    ) -> Result<Self> {
        let src = WeightSources { quant };
        let (vocab, hidden) = (cfg.vocab_size, cfg.hidden_size);
        let embed_vb = vb.pp("model.embed_tokens");
        let (embed_tokens, tied_head) = match src.blocks(&embed_vb, vocab, hidden)? {
            Some(table) => {
                let head = if cfg.tie_word_embeddings {
                    Some(Proj::from_blocks(&table, None, vb.device())?)
                } else {
                    None
                };
                let embed = QEmbedding::new(table, vb.device(), vb.dtype());
                (Embed::Quantized(embed), head)
            }
            None => {
                let embed = candle_nn::embedding(vocab, hidden, embed_vb)?;
                let head = cfg
                    .tie_word_embeddings
                    .then(|| Proj::Dense(Linear::new(embed.embeddings().clone(), None)));
                (Embed::Dense(embed), head)
            }
        };
        let lm_head = match tied_head {
            Some(head) => head,
            None => src.proj(hidden, vocab, false, vb.pp("lm_head"))?,
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| LayerWeights::load(vb.pp(format!("model.layers.{i}")), cfg, src))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embed_tokens,
            layers,
            norm: candle_nn::rms_norm(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("model.norm"))?,
            lm_head,
            rope: RotaryEmbedding::new(cfg, vb.device())?,
            config: cfg.clone(),
            dtype: vb.dtype(),
            device: vb.device().clone(),
            kernels: Kernels::Fast,
            sentence_ends: None,
        })
    }

    /// The same model, knowing which of its token ids end a sentence.
    pub fn with_sentence_ends(mut self, ends: SentenceEnds) -> Self {
        self.sentence_ends = Some(Arc::new(ends));
        self
    }

    pub fn sentence_ends(&self) -> Option<&SentenceEnds> {
        self.sentence_ends.as_deref()
    }

    /// The same model running `kernels` in every layer and the final norm. Cheap: the
    /// weights are shared, not copied. See [`Kernels`] for why this exists.
    pub fn with_kernels(mut self, kernels: Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The layers in order, each running this model's [`Kernels`].
    pub fn layers(&self) -> Vec<DecoderLayer<'_>> {
        self.layers
            .iter()
            .map(|weights| DecoderLayer {
                weights,
                kernels: self.kernels,
            })
            .collect()
    }

    pub fn rope(&self) -> &RotaryEmbedding {
        &self.rope
    }

    /// (1, len, hidden) embeddings of `ids`.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        match &self.embed_tokens {
            Embed::Dense(e) => e.forward(&Tensor::new(ids, &self.device)?.unsqueeze(0)?),
            Embed::Quantized(e) => e.rows(ids)?.unsqueeze(0),
        }
    }

    /// Whether any matrix is held in block form (such a model has no backward pass).
    pub fn has_quantized_weights(&self) -> bool {
        self.lm_head.is_quantized()
            || matches!(self.embed_tokens, Embed::Quantized(_))
            || self.layer_projs().any(Proj::is_quantized)
    }

    /// Every layer's matrices: attention's four, then the MLP's.
    fn layer_projs(&self) -> impl Iterator<Item = &Proj> {
        self.layers.iter().flat_map(|l| {
            let a = &l.self_attn;
            [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj]
                .into_iter()
                .chain(l.mlp.projs())
        })
    }

    /// Bytes the weights take in memory, and how many matrices are held as each kind
    /// ("f32", "q8_0", "q4_1 as q8_0"; the embedding table counted as one).
    pub fn weight_footprint(&self) -> (usize, std::collections::BTreeMap<String, usize>) {
        let tensor_bytes = |t: &Tensor| t.elem_count() * t.dtype().size_in_bytes();
        let mut kinds = std::collections::BTreeMap::new();
        let mut bytes = 0;
        let mut count = |p: &Proj| {
            bytes += p.size_in_bytes();
            *kinds.entry(p.kind()).or_insert(0) += 1;
        };
        for p in self.layer_projs() {
            count(p);
        }
        let tied = self.config.tie_word_embeddings;
        match &self.embed_tokens {
            Embed::Dense(e) => {
                // A tied dense head shares the table's storage: count it once.
                if !tied {
                    count(&self.lm_head);
                }
                bytes += tensor_bytes(e.embeddings());
                *kinds
                    .entry(e.embeddings().dtype().as_str().to_string())
                    .or_insert(0) += 1;
            }
            Embed::Quantized(e) => {
                count(&self.lm_head);
                bytes += e.size_in_bytes();
                *kinds.entry(super::quant::type_name(e.dtype())).or_insert(0) += 1;
            }
        }
        // Two norms per layer and the final one, in the run's dtype.
        let norms = 2 * self.layers.len() + 1;
        bytes += norms * self.config.hidden_size * self.dtype.size_in_bytes();
        (bytes, kinds)
    }

    pub fn positions(&self, ids: Vec<u32>) -> Result<Positions> {
        Positions::new(ids, &self.rope, self.dtype, &self.device)
    }

    /// Whether [`Llama::decode_resident`] runs for this model: CUDA, the fused kernels and a
    /// head shape the decode attention kernel covers.
    pub fn resident_decode_supported(&self) -> bool {
        #[cfg(feature = "cuda")]
        {
            let c = &self.config;
            self.device.is_cuda()
                && self.kernels == Kernels::Fast
                && super::decode_attention::supported(
                    self.dtype,
                    c.head_dim,
                    c.num_attention_heads,
                    c.num_key_value_heads,
                )
        }
        #[cfg(not(feature = "cuda"))]
        false
    }

    /// Whether the embedding of a token is expanded on the host (a quantized table): a
    /// device-resident step then takes the embedded row instead of looking the token up.
    pub fn embeds_on_host(&self) -> bool {
        matches!(self.embed_tokens, Embed::Quantized(_))
    }

    /// One decode step with every length on the device: the token and position in `inputs`
    /// (laid out as [`ResidentInputs::values`]; `embedded` holds the token's (1, 1, hidden)
    /// row where [`Llama::embeds_on_host`]) go through every layer, each writing its new
    /// entry into `cache`'s buffers (which must have room: [`LayerCache::reserve`]) without
    /// recording it on the host. Returns the logits (vocab,) f32. Only where
    /// [`Llama::resident_decode_supported`].
    #[cfg(feature = "cuda")]
    pub fn decode_resident(
        &self,
        inputs: &Tensor,
        embedded: Option<&Tensor>,
        cache: &super::cache::KvCache,
    ) -> Result<Tensor> {
        let resident = ResidentInputs::new(inputs, &self.rope, self.dtype)?;
        let mut hidden: Tensor = match (&self.embed_tokens, embedded) {
            (_, Some(row)) => row.clone(),
            (Embed::Dense(embed), None) => embed.forward(&resident.token()?)?,
            (Embed::Quantized(_), None) => {
                candle_core::bail!(
                    "a quantized embedding table is expanded on the host: pass the row"
                )
            }
        };
        let mut delta = None;
        for (index, (layer, layer_cache)) in self.layers().iter().zip(&cache.layers).enumerate() {
            let (residual, mlp) = layer.forward_resident(
                &hidden,
                delta.as_ref(),
                &self.rope,
                layer_cache,
                &resident,
                ResidentInputs::slot(index),
            )?;
            (hidden, delta) = (residual, Some(mlp));
        }
        let normed = match &delta {
            Some(delta) => super::fused::add_rms_norm(&hidden, delta, &self.norm)?.1,
            None => rms_norm(&self.norm, &hidden, self.kernels)?,
        };
        self.lm_head
            .forward(&normed)?
            .squeeze(0)?
            .squeeze(0)?
            .to_dtype(DType::F32)
    }

    /// Final norm and lm_head of the given rows only, (1, rows, hidden) -> (rows, vocab) f32.
    /// Prefill asks for its last row alone: the full-prompt logits would cost
    /// len × vocab × hidden for nothing.
    pub fn logits(&self, rows: &Tensor) -> Result<Tensor> {
        self.lm_head
            .forward(&rms_norm(&self.norm, rows, self.kernels)?)?
            .squeeze(0)?
            .to_dtype(DType::F32)
    }

    /// Logits of the last row of `hidden` (1, len, hidden) as (vocab,) f32.
    pub fn last_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let len = hidden.dim(1)?;
        self.logits(&hidden.narrow(1, len - 1, 1)?)?.squeeze(0)
    }

    /// Bytes of weights one decode step reads: every layer's matrices and norms, the final
    /// norm and the lm_head (a tied dense head is the embedding table, read whole as the
    /// head). The embedding table itself is left out: a step looks up one row of it.
    pub fn decode_weight_bytes(&self) -> usize {
        let matrices: usize = self.layer_projs().map(Proj::size_in_bytes).sum();
        let norms = (2 * self.layers.len() + 1) * self.config.hidden_size;
        matrices + self.lm_head.size_in_bytes() + norms * self.dtype.size_in_bytes()
    }
}
