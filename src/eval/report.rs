//! The `sdtp eval … --json` reports, assembled from what the runners return. Each starts with
//! the same provenance `sdtp profile` records (`crate::report::RunInfo`: sdtp version, git
//! commit, date, model, device, dtype) and the seed, then the contenders it compared. Layouts
//! are documented in docs/eval.md; fields are added, never renamed.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::agreement::{AgreementRow, AgreementSummary, BaselineRow};
use super::passkey::{PasskeyCell, PasskeyConfig, PasskeyRow};
use super::perplexity::{PerplexityConfig, PerplexitySummary, WindowRow};
use super::sweep::SweepPoint;
use crate::model::load::LoadedModel;
use crate::report::{RunInfo, ScheduleInfo};

/// Version of the eval JSON layouts.
pub const SCHEMA_VERSION: u32 = 1;

/// Provenance shared by every eval report (flattened into it): what a profile report starts
/// with, and the seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalHeader {
    #[serde(flatten)]
    pub run: RunInfo,
    /// `--seed`: random scorer, passkeys, synthetic weights. The same seed, model and
    /// arguments give the same report (but for `date`).
    pub seed: u64,
}

impl EvalHeader {
    /// The header of a report of `command` on `loaded`, started at `started`.
    pub fn new(
        command: &str,
        loaded: &LoadedModel,
        dtype: candle_core::DType,
        seed: u64,
        started: SystemTime,
    ) -> Self {
        Self {
            run: RunInfo::new(SCHEMA_VERSION, command, loaded, dtype, started),
            seed,
        }
    }
}

/// The prompts an agreement or sweep run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptSetInfo {
    /// The JSONL file (repository path of the default set, or the path given).
    pub source: String,
    /// Prompts in the file.
    pub in_set: usize,
    /// Prompts run: the first `limit` of those within `max_tokens`.
    pub run: usize,
    pub limit: Option<usize>,
    pub max_tokens: Option<usize>,
    /// Whether the model's chat template wrapped each prompt.
    pub chat: bool,
    /// Token counts of the prompts run (template included).
    pub tokens_min: usize,
    pub tokens_max: usize,
    pub tokens_mean: f64,
}

/// How agreement (and the sweep) compared runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementSettings {
    /// Greedy tokens compared per prompt (0: none).
    pub continuation_tokens: usize,
    /// k of the top-k overlap.
    pub top_k: usize,
    /// Always "greedy".
    pub sampling: String,
    /// Whether decoding stops at end-of-sequence (always true).
    pub stop_at_eos: bool,
}

/// `sdtp eval agreement --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementReport {
    #[serde(flatten)]
    pub header: EvalHeader,
    /// "quantized" or "dequantized": how the reference (baseline) model's matrices were held
    /// when it is a second load of the model with other weights than the contenders'
    /// (`--reference-weights`). Absent when the baseline is the contenders' own model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_weights: Option<String>,
    pub settings: AgreementSettings,
    pub prompts: PromptSetInfo,
    /// The contenders, in run order (the baseline is implicit).
    pub schedules: Vec<ScheduleInfo>,
    pub summary: Vec<AgreementSummary>,
    pub baseline: Vec<BaselineRow>,
    pub rows: Vec<AgreementRow>,
}

/// The text `sdtp eval perplexity` scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextInfo {
    pub source: String,
    /// Tokens the whole text encodes to.
    pub tokens: usize,
}

/// `sdtp eval perplexity --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerplexityReport {
    #[serde(flatten)]
    pub header: EvalHeader,
    pub settings: PerplexityConfig,
    pub text: TextInfo,
    pub schedules: Vec<ScheduleInfo>,
    /// The baseline first, then each contender.
    pub summary: Vec<PerplexitySummary>,
    pub rows: Vec<WindowRow>,
}

/// The pieces of the passkey prompt (see `eval::passkey`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyFormat {
    pub prefix: String,
    pub filler: String,
    pub key_sentence: String,
    pub suffix: String,
}

impl Default for PasskeyFormat {
    fn default() -> Self {
        Self {
            prefix: super::passkey::PREFIX.to_string(),
            filler: super::passkey::FILLER.to_string(),
            key_sentence: super::passkey::key_sentence("{key}"),
            suffix: super::passkey::SUFFIX.to_string(),
        }
    }
}

/// `sdtp eval passkey --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyReport {
    #[serde(flatten)]
    pub header: EvalHeader,
    pub settings: PasskeyConfig,
    pub format: PasskeyFormat,
    pub schedules: Vec<ScheduleInfo>,
    pub cells: Vec<PasskeyCell>,
    pub rows: Vec<PasskeyRow>,
}

/// What a sweep varied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSettings {
    pub keep_ratios: Vec<f64>,
    pub scorers: Vec<String>,
    /// The schedule whose layers every point prunes after.
    pub layers_from: String,
    pub layers: Vec<usize>,
    #[serde(flatten)]
    pub agreement: AgreementSettings,
}

/// `sdtp eval sweep --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    #[serde(flatten)]
    pub header: EvalHeader,
    pub settings: SweepSettings,
    pub prompts: PromptSetInfo,
    pub schedules: Vec<ScheduleInfo>,
    /// The baseline first, then one per (keep ratio, scorer).
    pub points: Vec<SweepPoint>,
    pub summary: Vec<AgreementSummary>,
    pub baseline: Vec<BaselineRow>,
    pub rows: Vec<AgreementRow>,
}

/// Reads a report written by `--json`, checking its schema version.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path, what: &str) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let version = value.get("schema_version").and_then(|v| v.as_u64());
    if version != Some(u64::from(SCHEMA_VERSION)) {
        anyhow::bail!(
            "{} is not an sdtp eval report of schema version {SCHEMA_VERSION}",
            path.display()
        );
    }
    serde_json::from_value(value)
        .with_context(|| format!("{} is not an sdtp eval {what} report", path.display()))
}
