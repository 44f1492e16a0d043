//! Training the SDTP saliency predictor for a model (docs/training.md).
//!
//! - [`corpus`]: documents, the train/held-out split by document, token windows;
//! - [`saliency`]: π̂ = Σ_d ∂L/∂h ⊙ h of the frozen model at each stage, one backward pass;
//! - [`dataset`]: the sharded, resumable safetensors dataset `sdtp saliency` writes;
//!   [`labelling`]: the run that plans it and labels its missing shards;
//! - [`predictor`]: the per-stage MLPs, their losses, AdamW and early stopping;
//!   [`predictor_file`]: a predictor file's metadata and the schedule TOML beside it;
//! - [`training_set`]: a dataset's sequences as training reads them;
//! - [`report`]: the training report (`<out>.json`) and the tables `train-predictor` prints;
//! - [`evaluate`]: scorers compared on held-out text (Spearman, top-k overlap) and pruned
//!   prefill agreement with the unpruned one;
//! - [`metrics`]: the pure metric functions over scores; [`safetensors_io`]: safetensors with
//!   metadata.

pub mod corpus;
pub mod dataset;
pub mod evaluate;
pub mod labelling;
pub mod metrics;
pub mod predictor;
pub mod predictor_file;
pub mod report;
pub mod safetensors_io;
pub mod saliency;
pub mod training_set;

/// Metadata keys of a predictor file besides the two `LearnedScorer` checks.
pub const PREDICTOR_SCHEDULE_KEY: &str = "sdtp.schedule";
pub const PREDICTOR_CORPUS_KEY: &str = "sdtp.corpus";
pub const PREDICTOR_DATE_KEY: &str = "sdtp.date";
