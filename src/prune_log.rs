//! The per-layer prune log (`debug/prune_log.jsonl`): its record and an append-only writer
//! that leaves only whole lines behind, even when the process is killed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::prefill::{LayerStats, PrefillOutput};

/// One line of the prune log: what one layer did in one prefill. Fields are documented in
/// docs/prune_log.md; add fields, never rename them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRecord {
    pub run_id: String,
    pub model: String,
    pub prompt_len: usize,
    pub layer: usize,
    pub tokens_in: usize,
    pub tokens_out: usize,
    /// Tokens kept by this layer's pruning stage (= tokens_out).
    pub kept: usize,
    /// Tokens dropped after this layer (0 on layers without a stage).
    pub pruned: usize,
    /// The stage's keep ratio; null on layers without a stage.
    pub stage_keep_ratio: Option<f64>,
    /// tokens_out / prompt_len.
    pub cumulative_keep: f64,
    pub scorer: Option<String>,
    pub score_min: Option<f32>,
    pub score_max: Option<f32>,
    pub score_mean: Option<f32>,
    /// Layer wall time, device synchronised; null unless timing was asked for.
    pub layer_ms: Option<f64>,
    /// Milliseconds since the Unix epoch when the record was made.
    pub timestamp_ms: u128,
}

impl LayerRecord {
    pub fn from_stats(run_id: &str, model: &str, prompt_len: usize, s: &LayerStats) -> Self {
        let timestamp_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        Self {
            run_id: run_id.to_string(),
            model: model.to_string(),
            prompt_len,
            layer: s.layer,
            tokens_in: s.tokens_in,
            tokens_out: s.tokens_out,
            kept: s.tokens_out,
            pruned: s.tokens_in - s.tokens_out,
            stage_keep_ratio: s.stage_keep_ratio,
            cumulative_keep: s.tokens_out as f64 / prompt_len.max(1) as f64,
            scorer: s.scores.as_ref().map(|sc| sc.scorer.clone()),
            score_min: s.scores.as_ref().map(|sc| sc.min),
            score_max: s.scores.as_ref().map(|sc| sc.max),
            score_mean: s.scores.as_ref().map(|sc| sc.mean),
            layer_ms: s.wall_ms,
            timestamp_ms,
        }
    }
}

/// Appends records to a JSONL file, one `write` of a whole line at a time, flushed, so a
/// killed run never leaves half a line.
pub struct PruneLog {
    path: PathBuf,
    file: File,
}

impl PruneLog {
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create prune log folder {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open prune log {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn append(&mut self, record: &LayerRecord) -> Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.flush())
            .with_context(|| format!("cannot write prune log {}", self.path.display()))
    }

    /// Appends one record per layer of `prefill`.
    pub fn append_prefill(
        &mut self,
        run_id: &str,
        model: &str,
        prefill: &PrefillOutput,
    ) -> Result<()> {
        for s in &prefill.stats {
            self.append(&LayerRecord::from_stats(
                run_id,
                model,
                prefill.prompt_len,
                s,
            ))?;
        }
        Ok(())
    }
}

/// A run id unique enough for log lines: start time in ms and the process id.
pub fn new_run_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{ms:x}-{}", std::process::id())
}
