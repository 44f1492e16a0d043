//! The profile report: what `--json` writes (schema in docs/profile.md), the CSV summary,
//! and atomic file writing.
//!
//! Fields are added, never renamed; a change that breaks readers bumps [`SCHEMA_VERSION`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::flops::PrefillFlops;
use super::memory::MemoryKind;
use super::summary::Summary;
use crate::device::device_name;
use crate::model::load::LoadedModel;
use crate::prune::schedule::{AttentionScoring, PruneSchedule, ScorerKind, Stage};
use crate::prune::scorer::effective_scorer_kind;

/// Version of the JSON layout below.
pub const SCHEMA_VERSION: u32 = 1;

/// The git commit this binary was built from (see build.rs), or "unknown".
pub const GIT_COMMIT: &str = env!("SDTP_GIT_COMMIT");

/// The sdtp version from Cargo.toml.
pub const SDTP_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Provenance every report starts with, profile and eval alike (flattened into their JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub schema_version: u32,
    pub sdtp_version: String,
    pub git_commit: String,
    /// When the run started, RFC 3339 UTC.
    pub date: String,
    /// "end2end", "prefill", "agreement", "perplexity", "passkey" or "sweep".
    pub command: String,
    pub model: ModelInfo,
    /// "cpu", "cuda:0", …
    pub device: String,
    /// "f32", "bf16", …
    pub dtype: String,
    /// Threads candle's CPU kernels use.
    pub cpu_threads: usize,
}

impl RunInfo {
    /// A report of `command` (layout `schema_version`) on `loaded` in `dtype`, started at
    /// `started`, by this binary.
    pub fn new(
        schema_version: u32,
        command: &str,
        loaded: &LoadedModel,
        dtype: candle_core::DType,
        started: SystemTime,
    ) -> Self {
        Self {
            schema_version,
            sdtp_version: SDTP_VERSION.to_string(),
            git_commit: GIT_COMMIT.to_string(),
            date: humantime::format_rfc3339_seconds(started).to_string(),
            command: command.to_string(),
            model: ModelInfo::of(loaded),
            device: device_name(loaded.model.device()),
            dtype: dtype.as_str().to_string(),
            cpu_threads: candle_core::utils::get_num_threads(),
        }
    }
}

/// One `sdtp profile end2end|prefill` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileReport {
    #[serde(flatten)]
    pub run: RunInfo,
    pub settings: Settings,
    pub prompt: PromptInfo,
    pub memory: MemoryInfo,
    /// The baseline first, then each compared schedule, in run order.
    pub schedules: Vec<ScheduleInfo>,
    /// One entry per (length, mode): lengths in the order asked, the baseline first.
    pub results: Vec<ModeResult>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// File or hub name, or `synthetic:<preset>`.
    pub name: String,
    pub synthetic: bool,
    pub architecture: String,
    pub num_layers: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Longest prompt + generation the model accepts.
    pub context_length: usize,
    /// "quantized" or "dequantized" (`--weights`).
    #[serde(default)]
    pub weights: String,
    /// How many matrices are held as each kind: "f32", "q8_0", "q4_1 as q8_0" (widened at
    /// load for faster kernels), the embedding table counted as one.
    #[serde(default)]
    pub weight_kinds: std::collections::BTreeMap<String, usize>,
    /// Bytes the weights take in memory.
    #[serde(default)]
    pub weight_bytes: u64,
}

impl ModelInfo {
    /// The model block of a report (profile and eval alike) for a loaded model.
    pub fn of(loaded: &LoadedModel) -> Self {
        let cfg = loaded.model.config();
        let (weight_bytes, weight_kinds) = loaded.model.weight_footprint();
        Self {
            name: loaded.source.display_name(),
            synthetic: loaded.source.is_synthetic(),
            architecture: format!("{:?}", cfg.architecture).to_lowercase(),
            num_layers: cfg.num_hidden_layers,
            hidden_size: cfg.hidden_size,
            intermediate_size: cfg.intermediate_size,
            num_attention_heads: cfg.num_attention_heads,
            num_key_value_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
            vocab_size: cfg.vocab_size,
            context_length: cfg.max_position_embeddings,
            weights: loaded.weights.as_str().to_string(),
            weight_kinds,
            weight_bytes: weight_bytes as u64,
        }
    }

    /// "q4_1 as q8_0 weights (210 matrices), 97.4 MB" for a report's header line.
    pub fn weights_label(&self) -> String {
        let kinds = self
            .weight_kinds
            .iter()
            .map(|(kind, n)| format!("{kind} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{} weights [{kinds}] {:.1} MB",
            self.weights,
            self.weight_bytes as f64 / 1e6
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub repeats: usize,
    pub warmup: usize,
    /// Tokens generated per end2end run (0 for prefill).
    pub new_tokens: usize,
    pub seed: u64,
    /// Always "greedy": the same tokens for every mode that agrees on them.
    pub sampling: String,
    /// Always false: every run generates exactly `new_tokens`, end-of-sequence or not.
    pub stop_at_eos: bool,
    /// "abba": odd repetitions run the modes in reverse order.
    pub order: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptInfo {
    /// Repository path of the text the prompts are cut from.
    pub source: String,
    /// Tokens the whole text encodes to; longer prompts repeat it.
    pub source_tokens: usize,
    /// Whether a BOS token was prepended (never: the text is encoded as is).
    pub bos: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryInfo {
    pub kind: MemoryKind,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// "baseline" or the schedule's name: the `mode` of its results.
    pub mode: String,
    /// "none" for the baseline.
    pub name: String,
    /// The scorer that ranked tokens; null for the baseline.
    pub scorer: Option<String>,
    pub stages: Vec<Stage>,
    pub min_head_tokens: usize,
    pub min_tail_ratio: f64,
    /// Product of the keep ratios.
    pub cumulative_keep: f64,
    /// How a preset's layers were mapped onto this model, when they were.
    pub mapping: Option<String>,
    /// How the `attention` scorer read the attention; null for other scorers (absent in
    /// reports before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttentionScoring>,
}

impl ScheduleInfo {
    /// What reports say of `schedule` (its scorer already fixed), run as `mode`.
    pub fn of(mode: String, schedule: &PruneSchedule, mapping: Option<String>) -> Self {
        let scorer = (!schedule.stages.is_empty()).then(|| effective_scorer_kind(schedule));
        Self {
            mode,
            name: schedule.name.clone(),
            scorer: scorer.map(|k| k.as_str().to_string()),
            stages: schedule.stages.clone(),
            min_head_tokens: schedule.min_head_tokens,
            min_tail_ratio: schedule.min_tail_ratio,
            cumulative_keep: schedule.cumulative_keep(),
            mapping,
            attention: (scorer == Some(ScorerKind::Attention)).then_some(schedule.attention),
        }
    }
}

/// Tokens a pruning stage received and kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageCount {
    pub layer: usize,
    pub tokens_in: usize,
    pub tokens_out: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    pub stages: Vec<StageCount>,
    /// Tokens that reached the last layer.
    pub final_tokens: usize,
    /// final_tokens / length.
    pub final_ratio: f64,
}

/// Summaries over the measured repetitions of one (length, mode).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummaries {
    pub prefill_ms: Summary,
    pub prefill_tok_s: Summary,
    pub ttft_ms: Summary,
    /// Null in prefill mode.
    pub decode_ms: Option<Summary>,
    pub decode_tok_s: Option<Summary>,
    pub total_ms: Summary,
    pub peak_memory_bytes: Option<Summary>,
}

/// Ratios baseline median / this mode's median (> 1 means faster), at the same length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Speedup {
    pub prefill: Option<f64>,
    pub ttft: Option<f64>,
    pub decode: Option<f64>,
    pub total: Option<f64>,
    /// Baseline prefill FLOPs / this mode's (model FLOPs, scorer excluded).
    pub prefill_flop_ideal: Option<f64>,
}

/// One measured run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Repetition {
    /// 0-based measured repetition (warm-up runs are not recorded).
    pub index: usize,
    /// Place of this mode within its repetition (0 = ran first).
    pub position: usize,
    pub prefill_ms: f64,
    pub ttft_ms: f64,
    pub decode_ms: Option<f64>,
    /// Tokens generated, the first included.
    pub generated_tokens: usize,
    pub decode_tok_s: Option<f64>,
    pub total_ms: f64,
    pub peak_memory_bytes: Option<u64>,
    pub kv_cache_bytes: u64,
    pub final_tokens: usize,
}

/// Everything measured for one prompt length and one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModeResult {
    pub length: usize,
    /// "baseline" or the schedule's name.
    pub mode: String,
    pub schedule: String,
    pub scorer: Option<String>,
    /// The prompt repeated the source text to reach `length`.
    pub prompt_tiled: bool,
    /// Tokens each layer saw, layer 0 first.
    pub tokens_per_layer: Vec<usize>,
    pub kept: Kept,
    /// Bytes of keys and values held after the prefill.
    pub kv_cache_bytes: u64,
    pub flops: PrefillFlops,
    pub summary: MetricSummaries,
    /// Null for the baseline.
    pub speedup: Option<Speedup>,
    pub repetitions: Vec<Repetition>,
}

/// Writes `bytes` to `path` through `path.tmp` and a rename, so readers never see half a
/// file and a failed run leaves none. Creates the parent folder. A symbolic link is written
/// through (the file it points to is replaced, the link stays), and a special file such as
/// `/dev/stdout` or a pipe is written directly: renaming over it would replace the device.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() && !meta.is_dir() {
            return std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|mut f| f.write_all(bytes))
                .with_context(|| format!("cannot write {}", path.display()));
        }
    }
    let resolved = std::fs::canonicalize(path).ok();
    let path = resolved.as_deref().unwrap_or(path);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e}", path.display())
    })
}

impl ProfileReport {
    /// Pretty JSON, newline-terminated.
    pub fn to_json(&self) -> Result<String> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        Ok(text)
    }

    /// Reads a report written by `--json`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let report: Self = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an sdtp profile report", path.display()))?;
        if report.run.schema_version != SCHEMA_VERSION {
            anyhow::bail!(
                "{} has schema version {}; this sdtp reads version {SCHEMA_VERSION}",
                path.display(),
                report.run.schema_version
            );
        }
        Ok(report)
    }

    /// The baseline result at `length`.
    pub fn baseline(&self, length: usize) -> Option<&ModeResult> {
        self.results
            .iter()
            .find(|r| r.length == length && r.mode == BASELINE)
    }

    /// One CSV row per (length, mode), with the header first (columns in docs/profile.md).
    pub fn to_csv(&self) -> String {
        let mut out = CSV_COLUMNS.join(",");
        out.push('\n');
        for r in &self.results {
            let s = &r.summary;
            let sp = r.speedup.as_ref();
            let opt = |v: Option<f64>| v.map(fmt_num).unwrap_or_default();
            let median = |v: Option<&Summary>| opt(v.map(|s| s.median));
            let cells: Vec<String> = vec![
                r.length.to_string(),
                csv_escape(&r.mode),
                csv_escape(&r.schedule),
                csv_escape(r.scorer.as_deref().unwrap_or("")),
                s.prefill_ms.n.to_string(),
                fmt_num(s.prefill_ms.median),
                fmt_num(s.prefill_ms.min),
                fmt_num(s.prefill_ms.max),
                fmt_num(s.prefill_ms.sd),
                fmt_num(s.prefill_tok_s.median),
                fmt_num(s.ttft_ms.median),
                median(s.decode_ms.as_ref()),
                opt(s.decode_ms.map(|d| d.sd)),
                median(s.decode_tok_s.as_ref()),
                fmt_num(s.total_ms.median),
                fmt_num(s.total_ms.min),
                fmt_num(s.total_ms.max),
                fmt_num(s.total_ms.sd),
                r.kept.final_tokens.to_string(),
                fmt_num(r.kept.final_ratio),
                r.kv_cache_bytes.to_string(),
                opt(s.peak_memory_bytes.map(|p| p.median)),
                r.flops.model.to_string(),
                r.flops.scorer.to_string(),
                opt(sp.and_then(|x| x.prefill)),
                opt(sp.and_then(|x| x.prefill_flop_ideal)),
                opt(sp.and_then(|x| x.ttft)),
                opt(sp.and_then(|x| x.decode)),
                opt(sp.and_then(|x| x.total)),
                csv_escape(&self.run.model.name),
                csv_escape(&self.run.dtype),
                csv_escape(&self.run.model.weights),
                csv_escape(&self.run.device),
                csv_escape(&self.run.git_commit),
                csv_escape(&self.run.date),
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }
}

/// The `mode` of baseline results.
pub const BASELINE: &str = "baseline";

/// Columns of [`ProfileReport::to_csv`].
pub const CSV_COLUMNS: [&str; 35] = [
    "length",
    "mode",
    "schedule",
    "scorer",
    "repeats",
    "prefill_ms_median",
    "prefill_ms_min",
    "prefill_ms_max",
    "prefill_ms_sd",
    "prefill_tok_s_median",
    "ttft_ms_median",
    "decode_ms_median",
    "decode_ms_sd",
    "decode_tok_s_median",
    "total_ms_median",
    "total_ms_min",
    "total_ms_max",
    "total_ms_sd",
    "kept_final_tokens",
    "kept_final_ratio",
    "kv_cache_bytes",
    "peak_memory_bytes_median",
    "prefill_flops",
    "scorer_flops",
    "speedup_prefill",
    "speedup_prefill_flop_ideal",
    "speedup_ttft",
    "speedup_decode",
    "speedup_total",
    "model",
    "dtype",
    "weights",
    "device",
    "git_commit",
    "date",
];

fn fmt_num(v: f64) -> String {
    if v.is_finite() {
        // Enough digits for milliseconds and ratios without float noise.
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    } else {
        String::new()
    }
}

fn csv_escape(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_escape("keep09"), "keep09");
        assert_eq!(csv_escape("a,b"), "\"a,b\"");
        assert_eq!(csv_escape("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn numbers_are_short_and_exact_enough() {
        assert_eq!(fmt_num(812.5), "812.5");
        assert_eq!(fmt_num(2.0), "2");
        assert_eq!(fmt_num(1.234_567), "1.2346");
        assert_eq!(fmt_num(f64::NAN), "");
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("r.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        assert!(!dir.path().join("sub").join("r.json.tmp").exists());
        // A folder in the way: an error, and nothing left behind.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        assert!(write_atomic(&blocked, b"x").is_err());
        assert!(!dir.path().join("blocked.tmp").exists());
    }

    #[cfg(unix)]
    #[test]
    fn atomic_write_goes_through_links_and_into_special_files() {
        use std::os::unix::fs::FileTypeExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        std::fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        // /dev/null stays the device (as root, a rename would have replaced it with a file).
        write_atomic(Path::new("/dev/null"), b"{}").unwrap();
        assert!(std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device());
    }
}
