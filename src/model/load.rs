//! Resolving `--model` (HF folder, `.gguf` file, hub id in the local hf-hub cache, or
//! `synthetic:<preset>`) into a model, its tokenizer and its special tokens.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::config::ModelConfig;
use super::llama::Llama;
use super::quant::{check_block_widths, SyntheticQuant, WeightsMode, WeightsRequest};
use super::text::{SentenceEnds, TextCodec};
use super::tokenizer::tokenizer_from_gguf;
use super::weights::{GgufWeights, SyntheticQuantWeights, SyntheticWeights};

/// File name of the default model inside the sdtp cache.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Where sdtp keeps downloaded models: `$SDTP_CACHE`, else `~/.cache/sdtp`.
pub fn sdtp_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SDTP_CACHE") {
        return PathBuf::from(dir);
    }
    home_dir().join(".cache").join("sdtp")
}

pub fn default_model_path() -> PathBuf {
    sdtp_cache_dir().join("models").join(DEFAULT_MODEL_FILE)
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The hf-hub cache folder: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`, as huggingface_hub itself resolves it.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HF_HOME") {
        Some(home) => PathBuf::from(home).join("hub"),
        None => home_dir().join(".cache").join("huggingface").join("hub"),
    }
}

/// Where the weights of a run come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// A HF-layout folder: config.json, safetensors, tokenizer.json.
    Folder(PathBuf),
    Gguf(PathBuf),
    /// A hub id found in the local hf-hub cache; `snapshot` is its HF-layout folder.
    Hub {
        id: String,
        snapshot: PathBuf,
    },
    Synthetic(String),
}

impl ModelSource {
    /// Interprets a `--model` argument; `None` means the default model.
    pub fn resolve(arg: Option<&str>) -> Result<Self> {
        let Some(arg) = arg else {
            let path = default_model_path();
            if !path.is_file() {
                bail!(
                    "default model not found at {}; fetch it with `scripts/fetch_model.sh` or pass --model",
                    path.display()
                );
            }
            return Ok(Self::Gguf(path));
        };
        if let Some(preset) = arg.strip_prefix("synthetic:") {
            ModelConfig::synthetic(preset)?;
            return Ok(Self::Synthetic(preset.to_string()));
        }
        let path = Path::new(arg);
        if path.is_dir() {
            return Ok(Self::Folder(path.to_path_buf()));
        }
        if path.is_file() {
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
            {
                return Ok(Self::Gguf(path.to_path_buf()));
            }
            bail!(
                "model file {} is not a .gguf file; pass a .gguf file, a HF folder, a hub id or synthetic:<preset>",
                path.display()
            );
        }
        if looks_like_hub_id(arg) {
            return Self::from_hub_cache(arg, &hub_cache_dir());
        }
        bail!(
            "model path {} does not exist; pass a .gguf file, a HF folder, a hub id (org/name) or synthetic:<preset>",
            path.display()
        )
    }

    /// Finds `id` in the hf-hub cache at `cache_dir` (no download: the files must be there).
    pub fn from_hub_cache(id: &str, cache_dir: &Path) -> Result<Self> {
        let repo = hf_hub::Cache::new(cache_dir.to_path_buf()).model(id.to_string());
        match repo.get("config.json") {
            Some(config) => {
                let snapshot = config
                    .parent()
                    .context("hf-hub cache entry has no parent folder")?
                    .to_path_buf();
                Ok(Self::Hub {
                    id: id.to_string(),
                    snapshot,
                })
            }
            None => bail!(
                "model {id} is not in the hf-hub cache at {} (looked for models--{}/refs/main and its snapshot's config.json); \
                 download it where there is network (huggingface-cli download {id}) or set HF_HOME/HF_HUB_CACHE",
                cache_dir.display(),
                id.replace('/', "--")
            ),
        }
    }

    /// A short name for reports.
    pub fn display_name(&self) -> String {
        match self {
            Self::Folder(p) | Self::Gguf(p) => p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string()),
            Self::Hub { id, .. } => id.clone(),
            Self::Synthetic(preset) => format!("synthetic:{preset}"),
        }
    }

    pub fn is_synthetic(&self) -> bool {
        matches!(self, Self::Synthetic(_))
    }
}

fn looks_like_hub_id(arg: &str) -> bool {
    let parts: Vec<&str> = arg.split('/').collect();
    parts.len() == 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
}

/// The config of `source` without loading any weights, so schedules and predictors can be
/// checked against it before the (slow) load.
pub fn read_config(source: &ModelSource) -> Result<ModelConfig> {
    match source {
        ModelSource::Gguf(path) => ModelConfig::from_gguf(&read_gguf_content(path)?)
            .with_context(|| format!("in {}", path.display())),
        ModelSource::Folder(dir) | ModelSource::Hub { snapshot: dir, .. } => {
            let config_path = dir.join("config.json");
            if !config_path.is_file() {
                bail!(
                    "model folder {} has no config.json; pass a HF-layout folder (config.json, *.safetensors, tokenizer.json) or a .gguf file",
                    dir.display()
                );
            }
            ModelConfig::from_hf_json_file(&config_path)
        }
        ModelSource::Synthetic(preset) => ModelConfig::synthetic(preset),
    }
}

/// How a model is loaded besides where from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadOptions {
    pub dtype: DType,
    /// Seed of synthetic weights.
    pub seed: u64,
    pub weights: WeightsRequest,
    /// Block type of a synthetic model's random quantized weights.
    pub quant: Option<SyntheticQuant>,
}

impl LoadOptions {
    /// Every matrix dequantised to `dtype`: the oracle the parity tests compare against.
    pub fn dequantized(dtype: DType, seed: u64) -> Self {
        Self {
            dtype,
            seed,
            weights: WeightsRequest::Dequantized,
            quant: None,
        }
    }
}

/// The weight format `options` ask of `source`, checked against what the source can hold
/// (a synthetic model's row widths against `--quant`'s block size) before any weights load.
pub fn resolve_weights(source: &ModelSource, options: &LoadOptions) -> Result<WeightsMode> {
    use WeightsRequest as R;
    match (source, options.quant, options.weights) {
        (ModelSource::Synthetic(preset), Some(SyntheticQuant(q)), R::Auto | R::Quantized) => {
            check_block_widths(q, &synthetic_row_widths(&ModelConfig::synthetic(preset)?))?;
            Ok(WeightsMode::Quantized)
        }
        (ModelSource::Synthetic(_), Some(_), R::Dequantized) => {
            bail!("--weights dequantized contradicts --quant; drop one of them")
        }
        (_, Some(q), _) => bail!(
            "--quant {} builds random quantized weights for synthetic: models only; {} has its own weights",
            super::quant::type_name(q.0),
            source.display_name()
        ),
        (ModelSource::Gguf(_), None, R::Auto | R::Quantized) => Ok(WeightsMode::Quantized),
        (ModelSource::Synthetic(_), None, R::Quantized) => bail!(
            "synthetic models have float weights unless --quant q4_0|q8_0|q4_k gives them a block type"
        ),
        (ModelSource::Folder(_) | ModelSource::Hub { .. }, None, R::Quantized) => bail!(
            "--weights quantized needs a .gguf file or a synthetic model with --quant; {} holds float safetensors",
            source.display_name()
        ),
        (_, None, _) => Ok(WeightsMode::Dequantized),
    }
}

/// A model ready to run, with everything needed to turn text into ids and back.
pub struct LoadedModel {
    pub model: Llama,
    /// How its matrices are held.
    pub weights: WeightsMode,
    pub codec: TextCodec,
    pub chat_template: Option<String>,
    pub bos_token: String,
    pub eos_token: String,
    /// Ids that end generation.
    pub eos_token_ids: Vec<u32>,
    pub source: ModelSource,
}

/// Loads `source` onto `device` in `dtype` with every matrix dequantised. Synthetic weights
/// use `seed`.
pub fn load_model(
    source: &ModelSource,
    device: &Device,
    dtype: DType,
    seed: u64,
) -> Result<LoadedModel> {
    load_model_with(source, device, &LoadOptions::dequantized(dtype, seed))
}

/// Loads `source` onto `device` as `options` ask.
pub fn load_model_with(
    source: &ModelSource,
    device: &Device,
    options: &LoadOptions,
) -> Result<LoadedModel> {
    let weights = resolve_weights(source, options)?;
    let dtype = options.dtype;
    let mut loaded = match source {
        ModelSource::Gguf(path) => load_gguf(path, device, dtype, weights, source),
        ModelSource::Folder(dir) | ModelSource::Hub { snapshot: dir, .. } => {
            load_folder(dir, device, dtype, source)
        }
        ModelSource::Synthetic(preset) => {
            let config = ModelConfig::synthetic(preset)?;
            let vb = VarBuilder::from_backend(
                Box::new(SyntheticWeights::new(options.seed)),
                dtype,
                device.clone(),
            );
            // resolve_weights checked that the preset's rows hold whole blocks of the type.
            let quant = options
                .quant
                .map(|SyntheticQuant(q)| SyntheticQuantWeights {
                    seed: options.seed,
                    dtype: q,
                });
            let model = Llama::load(
                vb,
                &config,
                quant.as_ref().map(|q| q as &dyn super::quant::QuantSource),
            )
            .with_context(|| format!("cannot build synthetic:{preset}"))?;
            Ok(LoadedModel {
                model,
                weights,
                codec: TextCodec::Bytes,
                chat_template: None,
                bos_token: String::new(),
                eos_token: String::new(),
                eos_token_ids: vec![],
                source: source.clone(),
            })
        }
    }?;
    // Sentence ends come from the tokenizer: one pass over the vocabulary, at load, so that
    // every prefill of this model can keep sentences whole.
    let ends = SentenceEnds::from_codec(&loaded.codec, loaded.model.config().vocab_size);
    loaded.model = loaded.model.with_sentence_ends(ends);
    Ok(loaded)
}

/// Reads the header of a GGUF file (metadata and tensor table), with the file named in errors.
pub fn read_gguf_content(path: &Path) -> Result<gguf_file::Content> {
    let mut file = std::fs::File::open(path)
        .with_context(|| format!("cannot open model {}", path.display()))?;
    gguf_file::Content::read(&mut file)
        .map_err(|e| anyhow::anyhow!("{} is not a readable GGUF file: {e}", path.display()))
}

/// Row lengths (input widths) of a model's matrices, which a block type must divide.
fn synthetic_row_widths(config: &ModelConfig) -> Vec<usize> {
    vec![
        config.hidden_size,
        config.intermediate_size,
        config.num_attention_heads * config.head_dim,
    ]
}

fn load_gguf(
    path: &Path,
    device: &Device,
    dtype: DType,
    weights_mode: WeightsMode,
    source: &ModelSource,
) -> Result<LoadedModel> {
    let content = read_gguf_content(path)?;
    let config =
        ModelConfig::from_gguf(&content).with_context(|| format!("in {}", path.display()))?;
    let tokenizer =
        tokenizer_from_gguf(&content).with_context(|| format!("in {}", path.display()))?;
    let token_text = |id: Option<u32>| {
        id.and_then(|id| tokenizer.tokenizer.id_to_token(id))
            .unwrap_or_default()
    };
    let bos_token = token_text(tokenizer.bos_token_id);
    let eos_token = token_text(tokenizer.eos_token_id);
    let weights = GgufWeights::new(path, content, &config)?;
    let vb = VarBuilder::from_backend(Box::new(weights.clone()), dtype, device.clone());
    let quant = (weights_mode == WeightsMode::Quantized)
        .then_some(&weights as &dyn super::quant::QuantSource);
    let model = Llama::load(vb, &config, quant)
        .map_err(|e| anyhow::anyhow!("cannot load weights from {}: {e}", path.display()))?;
    Ok(LoadedModel {
        model,
        weights: weights_mode,
        chat_template: tokenizer.chat_template,
        bos_token,
        eos_token,
        eos_token_ids: tokenizer.eos_token_id.into_iter().collect(),
        codec: TextCodec::Tokenizer(Box::new(tokenizer.tokenizer)),
        source: source.clone(),
    })
}

fn load_folder(
    dir: &Path,
    device: &Device,
    dtype: DType,
    source: &ModelSource,
) -> Result<LoadedModel> {
    let config = read_config(source)?;
    let weight_files = safetensors_files(dir)?;
    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&tokenizer_path)
        .map_err(|e| anyhow::anyhow!("cannot read tokenizer {}: {e}", tokenizer_path.display()))?;
    let tokenizer_config = read_tokenizer_config(dir)?;
    // Safety: the files are mapped read-only and stay in place for the model's lifetime; a
    // file changed underneath a running process is outside what we can defend against.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&weight_files, dtype, device) }
        .map_err(|e| anyhow::anyhow!("cannot read safetensors in {}: {e}", dir.display()))?;
    let model = Llama::load(vb, &config, None)
        .map_err(|e| anyhow::anyhow!("cannot load weights from {}: {e}", dir.display()))?;
    let special = |key: &str| -> String {
        match tokenizer_config.get(key) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Object(o)) => o
                .get("content")
                .and_then(|c| c.as_str())
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        }
    };
    let (bos_token, eos_token) = (special("bos_token"), special("eos_token"));
    let mut eos_token_ids = config.eos_token_ids.clone();
    if let Some(id) = tokenizer.token_to_id(&eos_token) {
        if !eos_token_ids.contains(&id) {
            eos_token_ids.push(id);
        }
    }
    Ok(LoadedModel {
        model,
        weights: WeightsMode::Dequantized,
        codec: TextCodec::Tokenizer(Box::new(tokenizer)),
        chat_template: tokenizer_config
            .get("chat_template")
            .and_then(|t| t.as_str())
            .map(str::to_string),
        bos_token,
        eos_token,
        eos_token_ids,
        source: source.clone(),
    })
}

/// `model.safetensors`, or the shards named by `model.safetensors.index.json`.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index_path = dir.join("model.safetensors.index.json");
    if !index_path.is_file() {
        bail!(
            "model folder {} has neither model.safetensors nor model.safetensors.index.json",
            dir.display()
        );
    }
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&index_path)
            .with_context(|| format!("cannot read {}", index_path.display()))?,
    )
    .with_context(|| format!("{} is not valid JSON", index_path.display()))?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .with_context(|| format!("{} has no weight_map", index_path.display()))?;
    let mut files: Vec<PathBuf> = map
        .values()
        .filter_map(|v| v.as_str())
        .map(|f| dir.join(f))
        .collect();
    files.sort();
    files.dedup();
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        bail!(
            "shard {} named in {} is missing",
            missing.display(),
            index_path.display()
        );
    }
    Ok(files)
}

fn read_tokenizer_config(dir: &Path) -> Result<serde_json::Map<String, serde_json::Value>> {
    let path = dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(serde_json::Map::new());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// The model's tokenizer without its weights (what `load_model` builds beside them), so
/// samples can be built, and lengths checked, before the slow load.
pub fn codec_before_load(source: &ModelSource) -> Result<TextCodec> {
    Ok(match source {
        ModelSource::Gguf(path) => TextCodec::Tokenizer(Box::new(
            tokenizer_from_gguf(&read_gguf_content(path)?)?.tokenizer,
        )),
        ModelSource::Folder(dir) | ModelSource::Hub { snapshot: dir, .. } => {
            let path = dir.join("tokenizer.json");
            TextCodec::Tokenizer(Box::new(tokenizers::Tokenizer::from_file(&path).map_err(
                |e| anyhow::anyhow!("cannot read tokenizer {}: {e}", path.display()),
            )?))
        }
        ModelSource::Synthetic(_) => TextCodec::Bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_hub_ids() {
        assert!(looks_like_hub_id("HuggingFaceTB/SmolLM2-135M-Instruct"));
        assert!(!looks_like_hub_id("./models/x"));
        assert!(!looks_like_hub_id("/abs/path"));
        assert!(!looks_like_hub_id("a/b/c"));
    }

    #[test]
    fn missing_path_says_what_to_pass() {
        let err = ModelSource::resolve(Some("/definitely/not/here.gguf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
    }

    #[test]
    fn unknown_synthetic_preset_is_an_error() {
        assert!(ModelSource::resolve(Some("synthetic:nope")).is_err());
    }
}
