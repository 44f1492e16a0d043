//! Training the SDTP saliency predictor for a model (docs/training.md).
//!
//! - [`corpus`]: documents, the train/held-out split by document, token windows;
//! - [`saliency`]: π̂ = Σ_d ∂L/∂h ⊙ h of the frozen model at each stage, one backward pass;
//! - [`dataset`]: the sharded, resumable safetensors dataset `sdtp saliency` writes;
//! - [`predictor`]: the per-stage MLPs, their losses, AdamW and early stopping;
//! - [`evaluate`]: scorers compared on held-out text (Spearman, top-k overlap) and pruned
//!   prefill agreement with the unpruned one;
//! - [`metrics`]: the pure metric functions; [`st`]: safetensors with metadata.

pub mod corpus;
pub mod dataset;
pub mod evaluate;
pub mod metrics;
pub mod predictor;
pub mod saliency;
pub mod st;

/// Metadata keys of a predictor file besides the two `LearnedScorer` checks.
pub const PREDICTOR_SCHEDULE_KEY: &str = "sdtp.schedule";
pub const PREDICTOR_CORPUS_KEY: &str = "sdtp.corpus";
pub const PREDICTOR_DATE_KEY: &str = "sdtp.date";

/// The commit that built this binary, when the build script recorded it.
pub fn git_commit() -> &'static str {
    option_env!("SDTP_GIT_COMMIT").unwrap_or("unknown")
}
