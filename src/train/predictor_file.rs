//! A trained predictor on disk: the metadata stored in its safetensors file, the schedule
//! TOML written beside it (`<out>.toml`, so `--schedule <out>.toml` uses it), and the checks
//! that an existing file fits the model, schedule and target it is evaluated with.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

use super::dataset::Dataset;
use super::predictor::{save_predictor, SaliencyTarget, Trained};
use super::safetensors_io::read_metadata;
use super::{PREDICTOR_CORPUS_KEY, PREDICTOR_DATE_KEY, PREDICTOR_SCHEDULE_KEY};
use crate::model::config::ModelConfig;
use crate::prune::schedule::{PruneSchedule, ScorerKind};
use crate::prune::scorer::{
    LearnedScorer, PREDICTOR_INPUTS_KEY, PREDICTOR_LAYERS_KEY, PREDICTOR_MODEL_KEY,
};
use crate::report::{git_commit, rfc3339, write_atomic};

/// The metadata key of the saliency target a predictor learned.
pub const PREDICTOR_TARGET_KEY: &str = "sdtp.target";

/// Writes `trained` to `out` with its provenance, the schedule TOML beside it, and checks
/// that the file loads for `config` and `schedule`.
pub fn save_trained_predictor(
    out: &Path,
    trained: &Trained,
    target: SaliencyTarget,
    config: &ModelConfig,
    fingerprint: &str,
    schedule: &PruneSchedule,
    dataset: &Dataset,
) -> Result<()> {
    let mut metadata = predictor_metadata(fingerprint, schedule, dataset, &trained.best_epoch);
    metadata.insert(
        PREDICTOR_TARGET_KEY.to_string(),
        target.as_str().to_string(),
    );
    metadata.insert(
        PREDICTOR_INPUTS_KEY.to_string(),
        trained.inputs.as_str().to_string(),
    );
    save_predictor(out, &trained.stages, metadata)?;
    write_schedule_toml(out, schedule)?;
    LearnedScorer::check_file(out, config, schedule)
        .context("the predictor just written does not load")?;
    Ok(())
}

/// Checks that the predictor at `path` loads for `config` and `schedule` and was trained on
/// `target` (files without a recorded target pass).
pub fn check_existing_predictor(
    path: &Path,
    config: &ModelConfig,
    schedule: &PruneSchedule,
    target: SaliencyTarget,
) -> Result<()> {
    LearnedScorer::check_file(path, config, schedule)?;
    let trained_on = read_metadata(path)?.get(PREDICTOR_TARGET_KEY).cloned();
    if let Some(t) = trained_on.filter(|t| t != target.as_str()) {
        bail!(
            "predictor {} was trained on the {t} target, not {}; pass --target {t}",
            path.display(),
            target.as_str()
        );
    }
    Ok(())
}

/// The provenance stored in a predictor file: the model and layers `LearnedScorer` checks,
/// the schedule, corpus and dataset it was trained on, when, and from which commit.
pub fn predictor_metadata(
    fingerprint: &str,
    schedule: &PruneSchedule,
    dataset: &Dataset,
    best_epoch: &[usize],
) -> HashMap<String, String> {
    let plan = &dataset.manifest.plan;
    let stages = schedule
        .stages
        .iter()
        .map(|s| format!("{}:{}", s.layer, s.keep_ratio))
        .collect::<Vec<_>>()
        .join(",");
    let heldout = plan.corpus.heldout_documents.len();
    HashMap::from([
        (PREDICTOR_MODEL_KEY.to_string(), fingerprint.to_string()),
        (
            PREDICTOR_LAYERS_KEY.to_string(),
            schedule
                .stages
                .iter()
                .map(|s| s.layer.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            PREDICTOR_SCHEDULE_KEY.to_string(),
            format!(
                "{} (layer:keep_ratio {stages}; min_head_tokens {}, min_tail_ratio {})",
                schedule.name, schedule.min_head_tokens, schedule.min_tail_ratio
            ),
        ),
        (
            PREDICTOR_CORPUS_KEY.to_string(),
            format!(
                "{} (fnv1a64 {}, {} documents, {heldout} held out: every {}th; {} windows of {} tokens; saliency loss over {} predictions)",
                plan.corpus.path,
                plan.corpus.digest,
                plan.corpus.documents,
                plan.corpus.heldout_every,
                plan.windows.len(),
                plan.seq_len,
                plan.loss
            ),
        ),
        (PREDICTOR_DATE_KEY.to_string(), rfc3339(SystemTime::now())),
        ("sdtp.dataset_model".to_string(), plan.model_name.clone()),
        (
            "sdtp.best_epochs".to_string(),
            best_epoch
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("sdtp.git_commit".to_string(), git_commit().to_string()),
        (
            "sdtp.architecture".to_string(),
            "input -> hidden/4 -> GELU(erf) -> 1, per stage (input: sdtp.inputs)".to_string(),
        ),
    ])
}

/// `<out>.toml`: the schedule with `scorer = "learned"` and the predictor by file name, so
/// `--schedule <out>.toml` uses it.
pub fn write_schedule_toml(out: &Path, schedule: &PruneSchedule) -> Result<()> {
    let mut s = schedule.clone();
    s.name = out.file_stem().map_or_else(
        || schedule.name.clone(),
        |n| n.to_string_lossy().into_owned(),
    );
    s.scorer = Some(ScorerKind::Learned);
    s.predictor = out.file_name().map(PathBuf::from);
    let text = format!(
        "# {} with the learned SDTP predictor trained by `sdtp train-predictor` (docs/training.md).\n{}",
        schedule.name,
        toml::to_string(&s)?
    );
    write_atomic(&out.with_extension("toml"), text.as_bytes())
}
