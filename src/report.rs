//! What the jobs (`eval`, `profile`, `train`) share about the files a user keeps:
//!
//! - provenance: the sdtp version, [`git_commit`], the date, the model, device and dtype
//!   ([`RunInfo`], flattened into every profile and eval report);
//! - contenders: the unpruned [`BASELINE`] and a schedule under test ([`Contender`], described
//!   by [`ScheduleInfo`]), and [`derive_seed`], the one rule that seeds a unit of work;
//! - the one writer, [`write_atomic`] (and [`write_json`] on top of it): every report, CSV,
//!   SVG, dataset shard and predictor goes through it.
//!
//! Report fields are added, never renamed; each job's report carries its own schema version.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::device::device_name;
use crate::model::load::LoadedModel;
use crate::prune::schedule::{AttentionScoring, PruneSchedule, ScorerKind, Stage};
use crate::prune::scorer::effective_scorer_kind;

/// The sdtp version from Cargo.toml.
pub const SDTP_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit this binary was built from (see build.rs), or "unknown".
pub fn git_commit() -> &'static str {
    env!("SDTP_GIT_COMMIT")
}

/// `at` as RFC 3339 UTC to the second, the `date` of every report.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

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
            git_commit: git_commit().to_string(),
            date: rfc3339(started),
            command: command.to_string(),
            model: ModelInfo::of(loaded),
            device: device_name(loaded.model.device()),
            dtype: dtype.as_str().to_string(),
            cpu_threads: candle_core::utils::get_num_threads(),
        }
    }
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

/// The `mode` of the unpruned run, in profile and eval reports alike.
pub const BASELINE: &str = "baseline";

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

/// One mode under test: the unpruned baseline or a schedule with its scorer named (never
/// `None` when it has stages), and what reports say about it (`info.mode` is its label).
#[derive(Debug, Clone)]
pub struct Contender {
    pub info: ScheduleInfo,
    pub schedule: PruneSchedule,
}

impl Contender {
    /// The unpruned baseline, labelled [`BASELINE`]: the same code path with an empty
    /// schedule.
    pub fn baseline() -> Self {
        Self::labelled(BASELINE.to_string(), PruneSchedule::none(), None)
    }

    /// A schedule labelled with its own name (profile's modes), its scorer fixed to the one
    /// it would use; says so once when the schedule names none.
    pub fn schedule(mut schedule: PruneSchedule, mapping: Option<String>) -> Self {
        let named = schedule.scorer.is_some();
        if let Some(kind) = fix_scorer(&mut schedule).filter(|_| !named) {
            // Said once here; naming it in the schedule keeps every run from saying it again.
            tracing::info!(
                "schedule {} names no scorer; using {}",
                schedule.name,
                kind.as_str()
            );
        }
        Self::labelled(schedule.name.clone(), schedule, mapping)
    }

    /// A schedule labelled `name/scorer` (eval's modes; just `name` when it prunes nothing),
    /// its scorer fixed to the one it would use.
    pub fn new(mut schedule: PruneSchedule, mapping: Option<String>) -> Self {
        let mode = match fix_scorer(&mut schedule) {
            Some(kind) => format!("{}/{}", schedule.name, kind.as_str()),
            None => schedule.name.clone(),
        };
        Self::labelled(mode, schedule, mapping)
    }

    fn labelled(mode: String, schedule: PruneSchedule, mapping: Option<String>) -> Self {
        Self {
            info: ScheduleInfo::of(mode, &schedule, mapping),
            schedule,
        }
    }

    pub fn mode(&self) -> &str {
        &self.info.mode
    }
}

/// Names the scorer a schedule with stages would use in the schedule itself; the scorer, or
/// `None` when the schedule prunes nothing.
fn fix_scorer(schedule: &mut PruneSchedule) -> Option<ScorerKind> {
    let scorer = (!schedule.stages.is_empty()).then(|| effective_scorer_kind(schedule));
    if scorer.is_some() {
        schedule.scorer = scorer;
    }
    scorer
}

/// A seed for one unit of work (a prompt, a passkey trial) derived from the run's `--seed`
/// and the unit's coordinates, so every unit is reproducible on its own, whatever else
/// runs with it (SplitMix64 finaliser over the mixed inputs).
pub fn derive_seed(seed: u64, parts: &[u64]) -> u64 {
    let mut x = seed;
    for &p in parts {
        x = splitmix(x ^ splitmix(p.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    }
    splitmix(x)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes `bytes` to `path` through `path.tmp` and a rename, so readers never see half a
/// file and a failed run leaves none. Creates the parent folder. A symbolic link is written
/// through (the file it points to is replaced, the link stays), and a special file such as
/// `/dev/stdout` or a pipe is written directly: renaming over it would replace the device.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| Ok(file.write_all(bytes)?))
}

/// [`write_atomic`] for a file written in pieces: `write` fills the open file (a temporary
/// beside `path`, renamed over it once `write` returns Ok and the data is synced; removed
/// on any error).
pub fn write_atomic_with<T>(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<T>,
) -> Result<T> {
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() && !meta.is_dir() {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            return write(&mut file).with_context(|| format!("cannot write {}", path.display()));
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
    let attempt = || -> Result<T> {
        let mut file = std::fs::File::create(&tmp)?;
        let value = write(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(value)
    };
    attempt().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::anyhow!("cannot write {}: {e:#}", path.display())
    })
}

/// Pretty JSON of a report, newline-terminated.
pub fn to_json<T: Serialize>(report: &T) -> Result<String> {
    let mut text = serde_json::to_string_pretty(report).context("cannot serialise the report")?;
    text.push('\n');
    Ok(text)
}

/// [`to_json`] of a report written with [`write_atomic`]: nothing is left at `path` if it
/// fails.
pub fn write_json<T: Serialize>(path: &Path, report: &T) -> Result<()> {
    write_atomic(path, to_json(report)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_are_stable_and_distinct() {
        assert_eq!(derive_seed(1, &[2, 3]), derive_seed(1, &[2, 3]));
        assert_ne!(derive_seed(1, &[2, 3]), derive_seed(1, &[3, 2]));
        assert_ne!(derive_seed(1, &[0]), derive_seed(2, &[0]));
        assert_ne!(derive_seed(1, &[0]), derive_seed(1, &[1]));
    }

    #[test]
    fn contender_labels() {
        let none = Contender::new(PruneSchedule::none(), None);
        assert_eq!(none.mode(), "none");
        assert_eq!(none.info.scorer, None);
        let keep = PruneSchedule::preset("keep09", 30).unwrap().schedule;
        let c = Contender::new(keep.clone(), None);
        assert_eq!(c.mode(), "keep09/attention");
        assert_eq!(c.schedule.scorer, Some(ScorerKind::Attention));
        // Profile labels a schedule by its name alone, and the baseline as such.
        let p = Contender::schedule(keep, None);
        assert_eq!(p.mode(), "keep09");
        assert_eq!(p.schedule.scorer, Some(ScorerKind::Attention));
        assert_eq!(p.info.scorer.as_deref(), Some("attention"));
        let base = Contender::baseline();
        assert_eq!((base.mode(), base.info.name.as_str()), (BASELINE, "none"));
        assert_eq!(base.info.scorer, None);
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
