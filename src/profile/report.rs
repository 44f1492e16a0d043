//! The profile report: what `--json` writes (schema in docs/profile.md) and the CSV summary.
//! Its provenance and the writer are the shared ones (`crate::report`).
//!
//! Fields are added, never renamed; a change that breaks readers bumps [`SCHEMA_VERSION`].

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::memory::MemoryKind;
use crate::metrics::flops::PrefillFlops;
use crate::metrics::summary::Summary;
use crate::report::{RunInfo, ScheduleInfo, BASELINE};

/// Version of the JSON layout below.
pub const SCHEMA_VERSION: u32 = 1;

/// One `sdtp profile end2end|prefill` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileReport {
    #[serde(flatten)]
    pub run: RunInfo,
    pub settings: Settings,
    pub prompt: PromptInfo,
    pub memory: MemoryInfo,
    /// The copy rate decode bandwidth is compared with; null for prefill (no decode).
    #[serde(default)]
    pub roofline: Option<Roofline>,
    /// The baseline first, then each compared schedule, in run order.
    pub schedules: Vec<ScheduleInfo>,
    /// One entry per (length, mode): lengths in the order asked, the baseline first.
    pub results: Vec<ModeResult>,
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

/// The device's measured copy rate (`device::copy_rate_bytes_per_s`), once per report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Roofline {
    /// Bytes read plus bytes written per second of a device-to-device copy, in GB/s (10⁹
    /// bytes): 2 × probe_bytes / median time of 5 copies after a warm-up.
    pub copy_rate_gb_s: f64,
    /// Bytes of the copied buffer (1 GiB on a GPU, 256 MiB on the CPU).
    pub probe_bytes: u64,
    /// How it was measured, in words.
    pub description: String,
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
    /// Bytes read per decode step × decode tokens/s, in GB/s; null in prefill mode.
    #[serde(default)]
    pub decode_bandwidth_gb_s: Option<Summary>,
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
    #[serde(default)]
    pub decode_bandwidth_gb_s: Option<f64>,
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
    /// Bytes one decode step reads, averaged over the run's steps: weights plus KV cache
    /// (`metrics::bandwidth`). Null in prefill mode, as are the two parts and the share.
    #[serde(default)]
    pub decode_bytes_per_token: Option<u64>,
    /// Layer matrices and norms, final norm, lm_head (not the embedding table).
    #[serde(default)]
    pub decode_weight_bytes_per_token: Option<u64>,
    /// Every layer's whole KV cache, its mean length over the decode steps.
    #[serde(default)]
    pub decode_kv_bytes_per_token: Option<u64>,
    /// Median decode bandwidth / the report's copy rate (1 = at the copy rate).
    #[serde(default)]
    pub roofline_share: Option<f64>,
    /// How the decode steps ran: "cuda-graph", "resident" (lengths on the device, launched
    /// op by op) or "host" (`resident_decode::DecodePath`). Null in prefill mode.
    #[serde(default)]
    pub decode_path: Option<String>,
    pub flops: PrefillFlops,
    pub summary: MetricSummaries,
    /// Null for the baseline.
    pub speedup: Option<Speedup>,
    pub repetitions: Vec<Repetition>,
}

impl ProfileReport {
    /// Pretty JSON, newline-terminated.
    pub fn to_json(&self) -> Result<String> {
        crate::report::to_json(self)
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
                opt_int(r.decode_bytes_per_token),
                opt_int(r.decode_weight_bytes_per_token),
                opt_int(r.decode_kv_bytes_per_token),
                median(s.decode_bandwidth_gb_s.as_ref()),
                opt(r.roofline_share),
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
                opt(self.roofline.as_ref().map(|x| x.copy_rate_gb_s)),
                csv_escape(&self.run.git_commit),
                csv_escape(&self.run.date),
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }
}

/// Columns of [`ProfileReport::to_csv`].
pub const CSV_COLUMNS: [&str; 41] = [
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
    "decode_bytes_per_token",
    "decode_weight_bytes_per_token",
    "decode_kv_bytes_per_token",
    "decode_bandwidth_gb_s_median",
    "roofline_share",
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
    "copy_rate_gb_s",
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

fn opt_int(v: Option<u64>) -> String {
    v.map(|x| x.to_string()).unwrap_or_default()
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
}
