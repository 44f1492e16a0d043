//! `ModelConfig`: the shape and hyper-parameters of a Llama-family model, read from a HF
//! `config.json`, from GGUF metadata, or from a `synthetic:` preset, and validated at load.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use serde::{Deserialize, Serialize};

use super::gguf_meta::Metadata;

/// The model families that share our one forward implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    Llama,
    Mistral,
    Qwen2,
}

/// Llama-3.1 style frequency-dependent RoPE scaling (`rope_scaling.rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Longest prompt + generation the model accepts.
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry a bias (Qwen2).
    pub attention_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Checks the invariants the forward pass relies on, so a bad config fails at load and
    /// not inside a matmul.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, value) in positive {
            if value == 0 {
                bail!("model config: {name} is 0; it must be positive");
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            bail!(
                "model config: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.num_key_value_heads
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            bail!(
                "model config: head_dim {} must be even for RoPE",
                self.head_dim
            );
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            bail!(
                "model config: rms_norm_eps {} must be a positive number",
                self.rms_norm_eps
            );
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            bail!(
                "model config: rope_theta {} must be a positive number",
                self.rope_theta
            );
        }
        Ok(())
    }

    /// Reads a HF `config.json` (model types llama, mistral, qwen2).
    pub fn from_hf_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_hf_json(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn from_hf_json(text: &str) -> Result<Self> {
        let raw: HfConfig = serde_json::from_str(text).context("config.json is not valid")?;
        let architecture = match raw.model_type.as_str() {
            "llama" => Architecture::Llama,
            "mistral" => Architecture::Mistral,
            "qwen2" => Architecture::Qwen2,
            other => bail!(
                "unsupported architecture model_type \"{other}\" (supported: llama, mistral, qwen2)"
            ),
        };
        let num_key_value_heads = raw.num_key_value_heads.unwrap_or(raw.num_attention_heads);
        let head_dim = match raw.head_dim {
            Some(d) => d,
            None if raw.num_attention_heads > 0 => raw.hidden_size / raw.num_attention_heads,
            None => 0,
        };
        let rope_scaling = match raw.rope_scaling {
            None => None,
            Some(s) => match s.rope_type.as_deref().or(s.kind.as_deref()) {
                Some("llama3") => Some(Llama3RopeScaling {
                    factor: s.factor.context("rope_scaling.factor missing")?,
                    low_freq_factor: s.low_freq_factor.unwrap_or(1.0),
                    high_freq_factor: s.high_freq_factor.unwrap_or(4.0),
                    original_max_position_embeddings: s
                        .original_max_position_embeddings
                        .unwrap_or(8192),
                }),
                Some("default") | None => None,
                Some(other) => {
                    bail!("unsupported rope_scaling type \"{other}\" (supported: llama3, default)")
                }
            },
        };
        let config = Self {
            architecture,
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta: raw.rope_theta.unwrap_or(10_000.0),
            rope_scaling,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(4096),
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            attention_bias: raw
                .attention_bias
                .unwrap_or(architecture == Architecture::Qwen2),
            bos_token_id: raw.bos_token_id,
            eos_token_ids: raw.eos_token_id.map(EosIds::into_vec).unwrap_or_default(),
        };
        config.validate()?;
        Ok(config)
    }

    /// Reads the `llama.*` metadata of a GGUF file. `has_output_weight` says whether the file
    /// carries a separate `output.weight` (otherwise the embeddings are tied).
    pub fn from_gguf(content: &gguf_file::Content) -> Result<Self> {
        let md = Metadata(&content.metadata);
        let arch = md.required_string("general.architecture")?;
        if arch != "llama" {
            bail!("unsupported GGUF architecture \"{arch}\" (supported: llama)");
        }
        let token_embd = content
            .tensor_infos
            .get("token_embd.weight")
            .context("GGUF has no token_embd.weight tensor")?;
        let (vocab_size, hidden_size) = token_embd
            .shape
            .dims2()
            .context("GGUF token_embd.weight is not 2-D")?;
        let num_attention_heads = md.required_usize("llama.attention.head_count")?;
        let num_key_value_heads = md
            .required_usize("llama.attention.head_count_kv")
            .unwrap_or(num_attention_heads);
        let head_dim = md
            .required_usize("llama.attention.key_length")
            .unwrap_or(hidden_size / num_attention_heads.max(1));
        let config = Self {
            architecture: Architecture::Llama,
            vocab_size,
            hidden_size: md.required_usize("llama.embedding_length")?,
            intermediate_size: md.required_usize("llama.feed_forward_length")?,
            num_hidden_layers: md.required_usize("llama.block_count")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: md.required_f64("llama.attention.layer_norm_rms_epsilon")?,
            rope_theta: md.required_f64("llama.rope.freq_base").unwrap_or(10_000.0),
            rope_scaling: None,
            max_position_embeddings: md.required_usize("llama.context_length").unwrap_or(4096),
            tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
            attention_bias: false,
            bos_token_id: md
                .required_usize("tokenizer.ggml.bos_token_id")
                .ok()
                .map(|v| v as u32),
            eos_token_ids: md
                .required_usize("tokenizer.ggml.eos_token_id")
                .ok()
                .map(|v| vec![v as u32])
                .unwrap_or_default(),
        };
        if config.hidden_size != hidden_size {
            bail!(
                "GGUF token_embd.weight has width {hidden_size} but llama.embedding_length is {}",
                config.hidden_size
            );
        }
        config.validate()?;
        Ok(config)
    }

    /// Random-weight shapes of published models, for speed measurement only.
    pub fn synthetic(preset: &str) -> Result<Self> {
        // Synthetic weights are meaningless, so the context limit is set by memory rather
        // than by training: allow the 128K lengths the GPU benchmarks sweep.
        const SYNTHETIC_CONTEXT: usize = 131_072;
        let base = |layers, hidden, inter, heads, kv_heads, vocab, theta| Self {
            architecture: Architecture::Llama,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: inter,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim: hidden / heads,
            rms_norm_eps: 1e-5,
            rope_theta: theta,
            rope_scaling: None,
            max_position_embeddings: SYNTHETIC_CONTEXT,
            tie_word_embeddings: false,
            attention_bias: false,
            bos_token_id: None,
            eos_token_ids: vec![],
        };
        let config = match preset {
            "llama2-7b" => base(32, 4096, 11008, 32, 32, 32000, 10_000.0),
            "llama3-8b" => base(32, 4096, 14336, 32, 8, 128_256, 500_000.0),
            "mistral-7b" => Self {
                architecture: Architecture::Mistral,
                ..base(32, 4096, 14336, 32, 8, 32000, 1_000_000.0)
            },
            "qwen2-7b" => Self {
                architecture: Architecture::Qwen2,
                attention_bias: true,
                rms_norm_eps: 1e-6,
                ..base(28, 3584, 18944, 28, 4, 152_064, 1_000_000.0)
            },
            "smollm2-135m" => Self {
                tie_word_embeddings: true,
                ..base(30, 576, 1536, 9, 3, 49152, 100_000.0)
            },
            "tiny" => Self {
                tie_word_embeddings: true,
                ..base(6, 64, 128, 4, 2, 512, 10_000.0)
            },
            other => bail!(
                "unknown synthetic preset \"{other}\" (available: {})",
                SYNTHETIC_PRESETS.join(", ")
            ),
        };
        config.validate()?;
        Ok(config)
    }

    pub fn num_kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }
}

pub const SYNTHETIC_PRESETS: &[&str] = &[
    "llama2-7b",
    "llama3-8b",
    "mistral-7b",
    "qwen2-7b",
    "smollm2-135m",
    "tiny",
];

#[derive(Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<HfRopeScaling>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    bos_token_id: Option<u32>,
    eos_token_id: Option<EosIds>,
}

#[derive(Deserialize)]
struct HfRopeScaling {
    rope_type: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    factor: Option<f64>,
    low_freq_factor: Option<f64>,
    high_freq_factor: Option<f64>,
    original_max_position_embeddings: Option<usize>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum EosIds {
    One(u32),
    Many(Vec<u32>),
}

impl EosIds {
    fn into_vec(self) -> Vec<u32> {
        match self {
            EosIds::One(id) => vec![id],
            EosIds::Many(ids) => ids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA_JSON: &str = r#"{"model_type":"llama","vocab_size":100,"hidden_size":64,
        "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,
        "num_key_value_heads":2,"rms_norm_eps":1e-5,"rope_theta":10000.0,
        "max_position_embeddings":512,"tie_word_embeddings":true,"eos_token_id":[1,2]}"#;

    #[test]
    fn reads_llama_config_json() {
        let c = ModelConfig::from_hf_json(LLAMA_JSON).unwrap();
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.num_kv_groups(), 2);
        assert_eq!(c.eos_token_ids, vec![1, 2]);
        assert!(c.tie_word_embeddings && !c.attention_bias);
    }

    #[test]
    fn qwen2_defaults_to_attention_bias() {
        let json = LLAMA_JSON.replace("\"llama\"", "\"qwen2\"");
        assert!(ModelConfig::from_hf_json(&json).unwrap().attention_bias);
    }

    #[test]
    fn rejects_unsupported_architecture() {
        let json = LLAMA_JSON.replace("\"llama\"", "\"gpt_neox\"");
        let err = ModelConfig::from_hf_json(&json).unwrap_err().to_string();
        assert!(
            err.contains("unsupported architecture") && err.contains("gpt_neox"),
            "{err}"
        );
    }

    #[test]
    fn rejects_heads_not_divisible_by_kv_heads() {
        let json = LLAMA_JSON.replace("\"num_key_value_heads\":2", "\"num_key_value_heads\":3");
        assert!(ModelConfig::from_hf_json(&json).is_err());
    }

    #[test]
    fn reads_llama3_rope_scaling() {
        let json = LLAMA_JSON.replace(
            "\"rope_theta\":10000.0",
            "\"rope_theta\":500000.0,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\
             \"low_freq_factor\":1.0,\"high_freq_factor\":4.0,\
             \"original_max_position_embeddings\":8192}",
        );
        let c = ModelConfig::from_hf_json(&json).unwrap();
        assert_eq!(c.rope_scaling.unwrap().factor, 8.0);
    }

    #[test]
    fn synthetic_presets_are_valid_and_unknown_is_an_error() {
        for p in SYNTHETIC_PRESETS {
            ModelConfig::synthetic(p).unwrap();
        }
        let err = ModelConfig::synthetic("gpt5").unwrap_err().to_string();
        assert!(err.contains("llama2-7b"), "{err}");
    }
}
