//! What `sdtp train-predictor` reads from a `sdtp saliency` dataset: its sequences as
//! training sees them (the schedule's stages, π̂ turned into the chosen target, train and
//! held-out by document) and, for `--agreement`, the corpus it was made from.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use candle_core::Device;

use super::corpus::{load_corpus, Corpus, Split};
use super::dataset::{Dataset, StoredSequence};
use super::predictor::SaliencyTarget;

/// A dataset's complete shards loaded at `layers`, their π̂ replaced by `target`'s values.
pub struct TrainingSet {
    pub sequences: Vec<StoredSequence>,
}

impl TrainingSet {
    /// Loads the complete shards of `dataset` (warning when some are missing) and logs the
    /// split.
    pub fn load(
        dataset: &Dataset,
        layers: &[usize],
        target: SaliencyTarget,
        device: &Device,
    ) -> Result<Self> {
        let plan = &dataset.manifest.plan;
        if !dataset.is_complete() {
            tracing::warn!(
                "dataset {} has {} of {} shards; using those (rerun `sdtp saliency` with the same arguments to finish it)",
                dataset.dir.display(),
                dataset.complete_shards.len(),
                plan.num_shards()
            );
        }
        let mut sequences = dataset.load(layers, device)?;
        for stage in sequences.iter_mut().flat_map(|s| s.stages.iter_mut()) {
            stage.saliency = target.apply(&stage.saliency);
        }
        let set = Self { sequences };
        tracing::info!(
            "dataset {}: {} train and {} held-out sequences of {} tokens, stages {layers:?}",
            dataset.dir.display(),
            set.split(Split::Train).len(),
            set.split(Split::Heldout).len(),
            plan.seq_len
        );
        Ok(set)
    }

    /// The sequences of one split, in dataset order.
    pub fn split(&self, split: Split) -> Vec<&StoredSequence> {
        self.sequences.iter().filter(|s| s.split == split).collect()
    }
}

/// The corpus `dataset` was made from: `path`, or else the one its manifest records; a
/// corpus whose digest differs from the recorded one is an error.
pub fn dataset_corpus(path: Option<&Path>, dataset: &Dataset) -> Result<Corpus> {
    let recorded = &dataset.manifest.plan.corpus;
    let path = path.map_or_else(|| PathBuf::from(&recorded.path), Path::to_path_buf);
    let corpus = load_corpus(&path)?;
    if corpus.digest != recorded.digest {
        bail!(
            "corpus {} differs from the one dataset {} was made from (fnv1a64 {} vs {}); pass the original with --corpus",
            path.display(),
            dataset.dir.display(),
            corpus.digest,
            recorded.digest
        );
    }
    Ok(corpus)
}
