//! The saliency dataset on disk: a folder with `manifest.json` (what was labelled, for which
//! model, from which corpus) and shards `shard-NNNNN.safetensors` of a few sequences each.
//!
//! Shard tensors, for the `n` sequences of the shard, `T = seq_len`, `H = hidden_size` and
//! `A` attention heads; a sequence's prompt has `length` ≤ T tokens, the rest of its row is
//! zeros (a RULER sample's prompt is as long as its fitted haystack makes it):
//! - `tokens` u32 (n, T), `length` u32 (n,) and `window` u32 (n,) (index into the
//!   manifest's `windows`);
//! - `loss` f32 (n,): mean next-token cross entropy of the labelled span;
//! - per stage layer L: `hidden.L` (n, T, H) f16 (or f32), the output of layer L, which is
//!   what the predictor sees; `saliency.L` f32 (n, T), π̂ = Σ_d ∂L/∂h ⊙ h; `attention.L`
//!   f32 (n, T), the legacy attention scorer's score of the same tokens; `heads.L` f32
//!   (n, A, T), per head the attention the prompt's last queries pay each token (the
//!   question-aware input of a learned scorer).
//!
//! Shard metadata: `sdtp.model` (fingerprint), `sdtp.layers`, `sdtp.shard`, `sdtp.sequences`.
//! A shard is written to `.tmp` and renamed, so an existing shard is complete; a rerun
//! with the same settings skips those (resumable) and refuses a folder made with others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::corpus::{Split, WindowPlan};
use super::safetensors_io::{read_metadata, write_safetensors, RawTensor};
use super::saliency::SequenceLabels;
use crate::prune::scorer::{
    predictor_input, PredictorInputs, PREDICTOR_LAYERS_KEY, PREDICTOR_MODEL_KEY,
};

pub const MANIFEST_FILE: &str = "manifest.json";
pub const FORMAT: &str = "sdtp-saliency-2";
const SHARD_KEY: &str = "sdtp.shard";
const SEQUENCES_KEY: &str = "sdtp.sequences";

/// Where the labelled text came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusInfo {
    /// As given on the command line.
    pub path: String,
    /// FNV-1a 64 of the corpus file.
    pub digest: String,
    pub documents: usize,
    pub heldout_every: usize,
    pub train_documents: Vec<String>,
    pub heldout_documents: Vec<String>,
}

/// The RULER-style samples a dataset labels besides the corpus windows: each is its prompt
/// followed by its answer, and π̂ comes from the loss of the answer tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulerPlan {
    /// Task names (`eval::ruler::task::Task`), the families trained on.
    pub tasks: Vec<String>,
    /// Target prompt lengths, tokens.
    pub lengths: Vec<usize>,
    pub samples: usize,
    pub seed: u64,
    /// Whether prompts went through the model's chat template.
    pub chat: bool,
}

/// Everything that decides a dataset's contents: a rerun resumes only when this is equal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetPlan {
    pub format: String,
    /// `model_fingerprint` of the labelled model.
    pub model: String,
    pub model_name: String,
    pub hidden_size: usize,
    /// Attention heads: rows of each stored `heads.L`.
    pub attention_heads: usize,
    /// Queries whose attention `heads.L` averages: the schedule's scoring window, or 0 for
    /// its protected tail (see `labelling::stored_tail_queries`).
    pub tail_queries: usize,
    /// Stage layers labelled, strictly increasing.
    pub layers: Vec<usize>,
    /// The schedule the layers came from, its keep ratios and protected tokens.
    pub schedule: String,
    pub keep_ratios: Vec<f64>,
    pub min_head_tokens: usize,
    pub min_tail_ratio: f64,
    /// Tokens of a corpus window.
    pub seq_len: usize,
    /// Stored row length: the longest prompt (a corpus window or an answered prompt).
    pub row_len: usize,
    pub stride: usize,
    /// The predictions the saliency loss averages: `all` or `last:M` (see `LossSpan`).
    /// Absent in the first datasets, which all used `all`.
    #[serde(default = "loss_all")]
    pub loss: String,
    /// `f16` or `f32`.
    pub hidden_dtype: String,
    pub corpus: CorpusInfo,
    /// RULER-style samples labelled after the corpus windows, if any.
    pub ruler: Option<RulerPlan>,
    pub sequences_per_shard: usize,
    pub windows: Vec<WindowPlan>,
}

impl DatasetPlan {
    pub fn num_shards(&self) -> usize {
        self.windows.len().div_ceil(self.sequences_per_shard.max(1))
    }

    /// Window indices of shard `index`.
    pub fn shard_windows(&self, index: usize) -> std::ops::Range<usize> {
        let per = self.sequences_per_shard.max(1);
        let start = (index * per).min(self.windows.len());
        start..((index + 1) * per).min(self.windows.len())
    }

    /// The first field that differs from `other`, to say why a folder cannot be resumed.
    fn first_difference(&self, other: &DatasetPlan) -> Option<String> {
        let fields: [(&str, bool); 16] = [
            ("format", self.format == other.format),
            ("model", self.model == other.model),
            ("layers", self.layers == other.layers),
            ("schedule", self.schedule == other.schedule),
            ("keep ratios", self.keep_ratios == other.keep_ratios),
            (
                "protected tokens",
                self.min_head_tokens == other.min_head_tokens
                    && self.min_tail_ratio == other.min_tail_ratio,
            ),
            ("seq_len", self.seq_len == other.seq_len),
            ("stride", self.stride == other.stride),
            ("loss", self.loss == other.loss),
            ("hidden dtype", self.hidden_dtype == other.hidden_dtype),
            ("corpus", self.corpus.digest == other.corpus.digest),
            ("split", self.corpus == other.corpus),
            (
                "sequences per shard",
                self.sequences_per_shard == other.sequences_per_shard,
            ),
            ("windows", self.windows == other.windows),
            ("ruler samples", self.ruler == other.ruler),
            ("tail queries", self.tail_queries == other.tail_queries),
        ];
        fields
            .iter()
            .find(|(_, same)| !same)
            .map(|(name, _)| name.to_string())
    }
}

/// `manifest.json`: the plan plus when and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(flatten)]
    pub plan: DatasetPlan,
    /// RFC 3339, UTC, of the first run.
    pub created: String,
    pub sdtp_version: String,
    pub device: String,
    pub dtype: String,
}

fn loss_all() -> String {
    "all".to_string()
}

pub fn shard_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("shard-{index:05}.safetensors"))
}

fn layers_string(layers: &[usize]) -> String {
    layers
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Creates `dir` with `manifest`, or checks that the manifest already there has the same
/// plan (then the old one, with its creation date, is returned and the run resumes).
pub fn create_or_resume(dir: &Path, manifest: Manifest) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    if path.is_file() {
        let old = read_manifest(dir)?;
        if let Some(field) = old.plan.first_difference(&manifest.plan) {
            bail!(
                "dataset {} was made with a different {field} (model {}, schedule {}, corpus {}); pass a new --out folder or delete that one",
                dir.display(),
                old.plan.model,
                old.plan.schedule,
                old.plan.corpus.path
            );
        }
        return Ok(old);
    }
    if dir.exists() && std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_some()) {
        bail!(
            "{} exists and is not a saliency dataset (no {MANIFEST_FILE}); pass a new or empty --out folder",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_string_pretty(&manifest)?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(manifest)
}

/// Reads `dir/manifest.json`; a missing folder or file is a one-line error saying how to
/// make one.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    if !dir.is_dir() {
        bail!(
            "dataset {} does not exist; make one with `sdtp saliency --out {}`",
            dir.display(),
            dir.display()
        );
    }
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a saliency dataset (no readable {MANIFEST_FILE}); make one with `sdtp saliency`",
            dir.display()
        )
    })?;
    // The format first: a dataset of an older format lacks fields, and saying which format
    // it is tells the user what to do.
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a valid saliency manifest", path.display()))?;
    let format = value
        .get("format")
        .and_then(|f| f.as_str())
        .unwrap_or("none");
    if format != FORMAT {
        bail!(
            "{} has format {format:?}, this sdtp reads {FORMAT:?}; remake the dataset with `sdtp saliency`",
            path.display()
        );
    }
    serde_json::from_value(value)
        .with_context(|| format!("{} is not a valid saliency manifest", path.display()))
}

/// Whether shard `index` exists, complete, for this plan.
pub fn shard_is_complete(dir: &Path, plan: &DatasetPlan, index: usize) -> bool {
    let path = shard_path(dir, index);
    let Ok(md) = read_metadata(&path) else {
        return false;
    };
    md.get(PREDICTOR_MODEL_KEY) == Some(&plan.model)
        && md.get(PREDICTOR_LAYERS_KEY) == Some(&layers_string(&plan.layers))
        && md.get(SHARD_KEY) == Some(&index.to_string())
        && md.get(SEQUENCES_KEY) == Some(&plan.shard_windows(index).len().to_string())
}

/// One labelled sequence, ready for a shard.
pub struct LabelledSequence {
    pub window: usize,
    pub tokens: Vec<u32>,
    pub labels: SequenceLabels,
}

/// Writes shard `index` from its sequences (in window order).
pub fn write_shard(
    dir: &Path,
    plan: &DatasetPlan,
    index: usize,
    sequences: &[LabelledSequence],
) -> Result<()> {
    let (n, t, h) = (sequences.len(), plan.row_len, plan.hidden_size);
    let expected = plan.shard_windows(index);
    if n != expected.len() || sequences.iter().zip(expected).any(|(s, w)| s.window != w) {
        bail!("shard {index}: sequences do not match the plan");
    }
    let a = plan.attention_heads;
    let mut tokens = Vec::with_capacity(n * t);
    let mut lengths = Vec::with_capacity(n);
    let mut windows = Vec::with_capacity(n);
    let mut losses = Vec::with_capacity(n);
    for s in sequences {
        let len = s.tokens.len();
        if len == 0 || len > t || s.labels.stages.len() != plan.layers.len() {
            bail!("shard {index}: window {} has the wrong shape", s.window);
        }
        tokens.extend_from_slice(&s.tokens);
        tokens.resize(tokens.len() + t - len, 0);
        lengths.push(len as u32);
        windows.push(s.window as u32);
        losses.push(s.labels.loss);
    }
    // Every per-token row padded with zeros from the prompt's end to T.
    fn padded(values: &[f32], row: usize, width: usize, out: &mut Vec<f32>) {
        for chunk in values.chunks(row) {
            out.extend_from_slice(chunk);
        }
        out.resize(out.len() + (width - values.len() / row.max(1)) * row, 0.0);
    }
    let mut tensors = vec![
        ("tokens".to_string(), RawTensor::u32(vec![n, t], &tokens)),
        ("length".to_string(), RawTensor::u32(vec![n], &lengths)),
        ("window".to_string(), RawTensor::u32(vec![n], &windows)),
        ("loss".to_string(), RawTensor::f32(vec![n], &losses)),
    ];
    for (k, &layer) in plan.layers.iter().enumerate() {
        let mut hidden = Vec::with_capacity(n * t * h);
        let mut saliency = Vec::with_capacity(n * t);
        let mut attention = Vec::with_capacity(n * t);
        let mut heads = Vec::with_capacity(n * a * t);
        for s in sequences {
            let stage = &s.labels.stages[k];
            let len = s.tokens.len();
            if stage.layer != layer {
                bail!(
                    "shard {index}: stage {k} is layer {}, not {layer}",
                    stage.layer
                );
            }
            if stage.saliency.len() != len || stage.heads.dims() != [a, len] {
                bail!(
                    "shard {index}: window {} stage {layer} does not cover its {len} prompt tokens",
                    s.window
                );
            }
            padded(
                &stage.hidden.flatten_all()?.to_vec1::<f32>()?,
                h,
                t,
                &mut hidden,
            );
            padded(&stage.saliency, 1, t, &mut saliency);
            padded(&stage.attention, 1, t, &mut attention);
            for row in stage.heads.to_vec2::<f32>()? {
                padded(&row, 1, t, &mut heads);
            }
        }
        if plan.hidden_dtype == "f16" {
            if let Some(big) = hidden.iter().find(|v| v.abs() > 65_000.0) {
                bail!(
                    "layer {layer} has a hidden value {big} beyond f16's range; rerun with --hidden-dtype f32"
                );
            }
        }
        let hidden = match plan.hidden_dtype.as_str() {
            "f16" => RawTensor::f16(vec![n, t, h], &hidden),
            _ => RawTensor::f32(vec![n, t, h], &hidden),
        };
        tensors.push((format!("hidden.{layer}"), hidden));
        tensors.push((
            format!("saliency.{layer}"),
            RawTensor::f32(vec![n, t], &saliency),
        ));
        tensors.push((
            format!("attention.{layer}"),
            RawTensor::f32(vec![n, t], &attention),
        ));
        tensors.push((
            format!("heads.{layer}"),
            RawTensor::f32(vec![n, a, t], &heads),
        ));
    }
    let metadata = HashMap::from([
        (PREDICTOR_MODEL_KEY.to_string(), plan.model.clone()),
        (
            PREDICTOR_LAYERS_KEY.to_string(),
            layers_string(&plan.layers),
        ),
        (SHARD_KEY.to_string(), index.to_string()),
        (SEQUENCES_KEY.to_string(), n.to_string()),
    ]);
    write_safetensors(&shard_path(dir, index), &tensors, metadata)
}

/// One stage of one stored sequence.
pub struct StoredStage {
    /// (len, H) as stored (f16 or f32).
    pub hidden: Tensor,
    pub saliency: Vec<f32>,
    pub attention: Vec<f32>,
    /// (heads, len) f32: per head, the attention of the prompt's last queries.
    pub heads: Tensor,
}

/// One stored sequence with the stages that were asked for.
pub struct StoredSequence {
    pub window: usize,
    pub doc: String,
    pub split: Split,
    pub tokens: Vec<u32>,
    pub stages: Vec<StoredStage>,
}

/// A dataset opened for reading.
pub struct Dataset {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Shards present and complete.
    pub complete_shards: Vec<usize>,
}

impl Dataset {
    /// Opens `dir` and finds its complete shards. An empty dataset is an error.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = read_manifest(dir)?;
        let complete_shards: Vec<usize> = (0..manifest.plan.num_shards())
            .filter(|&i| shard_is_complete(dir, &manifest.plan, i))
            .collect();
        if complete_shards.is_empty() {
            bail!(
                "dataset {} has no finished shard; run `sdtp saliency` again with the same arguments to fill it",
                dir.display()
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            complete_shards,
        })
    }

    pub fn is_complete(&self) -> bool {
        self.complete_shards.len() == self.manifest.plan.num_shards()
    }

    /// Refuses a dataset made for another model.
    pub fn check_model(&self, fingerprint: &str, model_name: &str) -> Result<()> {
        let plan = &self.manifest.plan;
        if plan.model != fingerprint {
            bail!(
                "dataset {} was made for model {} ({}), not {fingerprint} ({model_name}); make one for this model with `sdtp saliency`",
                self.dir.display(),
                plan.model,
                plan.model_name
            );
        }
        Ok(())
    }

    /// Refuses stage layers the dataset has no labels for.
    pub fn check_layers(&self, schedule: &str, layers: &[usize]) -> Result<()> {
        let have = &self.manifest.plan.layers;
        if let Some(missing) = layers.iter().find(|l| !have.contains(l)) {
            bail!(
                "schedule {schedule} prunes after layer {missing}, but dataset {} has saliency for layers {have:?} only; run `sdtp saliency --schedule {schedule}` or train with a schedule of those layers",
                self.dir.display()
            );
        }
        Ok(())
    }

    /// Loads every sequence of the complete shards, with the stages of `layers` (each in the
    /// dataset: see [`Dataset::check_layers`]), onto `device`.
    pub fn load(&self, layers: &[usize], device: &Device) -> Result<Vec<StoredSequence>> {
        let plan = &self.manifest.plan;
        let mut out = Vec::new();
        for &index in &self.complete_shards {
            let path = shard_path(&self.dir, index);
            let tensors = candle_core::safetensors::load(&path, device)
                .with_context(|| format!("cannot read shard {}", path.display()))?;
            let get = |name: &str| -> Result<&Tensor> {
                tensors
                    .get(name)
                    .with_context(|| format!("shard {} has no tensor {name}", path.display()))
            };
            let tokens = get("tokens")?.to_vec2::<u32>()?;
            let lengths = get("length")?.to_vec1::<u32>()?;
            let windows = get("window")?.to_vec1::<u32>()?;
            let mut per_layer = Vec::with_capacity(layers.len());
            for &layer in layers {
                per_layer.push((
                    get(&format!("hidden.{layer}"))?.clone(),
                    get(&format!("saliency.{layer}"))?.to_vec2::<f32>()?,
                    get(&format!("attention.{layer}"))?.to_vec2::<f32>()?,
                    get(&format!("heads.{layer}"))?.clone(),
                ));
            }
            for (row, (mut tokens, window)) in tokens.into_iter().zip(windows).enumerate() {
                let window = window as usize;
                let len = lengths.get(row).map_or(0, |&l| l as usize);
                if len == 0 || len > tokens.len() {
                    bail!("shard {} row {row} has length {len}", path.display());
                }
                tokens.truncate(len);
                let plan_window = plan
                    .windows
                    .get(window)
                    .with_context(|| format!("shard {} names window {window}", path.display()))?;
                let stages = per_layer
                    .iter()
                    .map(|(hidden, saliency, attention, heads)| {
                        Ok(StoredStage {
                            hidden: hidden.get(row)?.narrow(0, 0, len)?,
                            saliency: saliency[row][..len].to_vec(),
                            attention: attention[row][..len].to_vec(),
                            heads: heads.get(row)?.narrow(1, 0, len)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                out.push(StoredSequence {
                    window,
                    doc: plan_window.doc.clone(),
                    split: plan_window.split,
                    tokens,
                    stages,
                });
            }
        }
        Ok(out)
    }
}

/// The hidden states of a stored stage as f32 (len, H).
pub fn hidden_f32(stage: &StoredStage) -> Result<Tensor> {
    Ok(stage.hidden.to_dtype(DType::F32)?)
}

/// A stored stage's predictor input rows (len, width) f32, built as the learned scorer builds
/// them at inference.
pub fn stage_input(stage: &StoredStage, inputs: PredictorInputs) -> Result<Tensor> {
    predictor_input(inputs, &stage.hidden, Some(&stage.heads))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::corpus::WindowPlan;
    use crate::train::saliency::StageLabels;

    fn plan(windows: usize) -> DatasetPlan {
        DatasetPlan {
            format: FORMAT.to_string(),
            model: "m".into(),
            model_name: "m".into(),
            hidden_size: 3,
            attention_heads: 2,
            tail_queries: 4,
            layers: vec![1, 2],
            schedule: "s".into(),
            keep_ratios: vec![0.9, 0.9],
            min_head_tokens: 1,
            min_tail_ratio: 0.1,
            seq_len: 4,
            row_len: 6,
            stride: 4,
            loss: "last:1".into(),
            hidden_dtype: "f32".into(),
            corpus: CorpusInfo {
                path: "c".into(),
                digest: "d".into(),
                documents: 1,
                heldout_every: 0,
                train_documents: vec!["doc".into()],
                heldout_documents: vec![],
            },
            ruler: None,
            sequences_per_shard: windows,
            windows: (0..windows)
                .map(|i| WindowPlan {
                    doc: if i == 0 {
                        "doc".into()
                    } else {
                        format!("ruler:vt:6:{i}")
                    },
                    start: 0,
                    split: Split::Train,
                })
                .collect(),
        }
    }

    /// A sequence of `len` prompt tokens whose every value encodes (sequence, stage, token).
    fn sequence(window: usize, len: usize, plan: &DatasetPlan) -> LabelledSequence {
        let dev = Device::Cpu;
        let v =
            |stage: usize, t: usize, d: usize| (window * 1000 + stage * 100 + t * 10 + d) as f32;
        let stages = plan
            .layers
            .iter()
            .enumerate()
            .map(|(k, &layer)| {
                let hidden: Vec<f32> = (0..len)
                    .flat_map(|t| (0..plan.hidden_size).map(move |d| v(k, t, d)))
                    .collect();
                let hidden = Tensor::from_vec(hidden, (len, plan.hidden_size), &dev).unwrap();
                let heads: Vec<f32> = (0..plan.attention_heads)
                    .flat_map(|h| (0..len).map(move |t| v(k, t, 7 + h)))
                    .collect();
                StageLabels {
                    layer,
                    grad: hidden.zeros_like().unwrap(),
                    hidden,
                    saliency: (0..len).map(|t| v(k, t, 5)).collect(),
                    attention: (0..len).map(|t| v(k, t, 6)).collect(),
                    heads: Tensor::from_vec(heads, (plan.attention_heads, len), &dev).unwrap(),
                }
            })
            .collect();
        LabelledSequence {
            window,
            tokens: (0..len as u32).map(|t| t + 1).collect(),
            labels: SequenceLabels { loss: 0.5, stages },
        }
    }

    #[test]
    fn a_dataset_of_the_first_format_is_named_as_such() -> Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join(MANIFEST_FILE),
            r#"{"format": "sdtp-saliency-1", "model": "m"}"#,
        )?;
        let err = read_manifest(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("sdtp-saliency-1") && err.contains("remake"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn prompts_of_different_lengths_come_back_as_written() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let plan = plan(2);
        let written = [sequence(0, 4, &plan), sequence(1, 6, &plan)];
        create_or_resume(
            dir.path(),
            Manifest {
                plan: plan.clone(),
                created: "now".into(),
                sdtp_version: "0".into(),
                device: "cpu".into(),
                dtype: "f32".into(),
            },
        )?;
        write_shard(dir.path(), &plan, 0, &written)?;
        assert!(shard_is_complete(dir.path(), &plan, 0));
        let read = Dataset::open(dir.path())?.load(&[2], &Device::Cpu)?;
        assert_eq!(read.len(), 2);
        for (got, want) in read.iter().zip(&written) {
            assert_eq!(got.tokens, want.tokens);
            let (g, w) = (&got.stages[0], &want.labels.stages[1]);
            assert_eq!(g.saliency, w.saliency);
            assert_eq!(g.attention, w.attention);
            assert_eq!(g.hidden.to_vec2::<f32>()?, w.hidden.to_vec2::<f32>()?);
            assert_eq!(g.heads.to_vec2::<f32>()?, w.heads.to_vec2::<f32>()?);
        }
        assert_eq!(read[1].doc, "ruler:vt:6:1");
        // A prompt longer than a row, or one whose stages miss tokens, is refused.
        assert!(write_shard(
            dir.path(),
            &plan,
            0,
            &[sequence(0, 7, &plan), sequence(1, 6, &plan)]
        )
        .is_err());
        let mut short = sequence(1, 6, &plan);
        short.labels.stages[0].saliency.pop();
        assert!(write_shard(dir.path(), &plan, 0, &[sequence(0, 4, &plan), short]).is_err());
        Ok(())
    }
}
