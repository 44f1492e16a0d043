//! The labelling run of `sdtp saliency`: the corpus tokenized and cut into windows, the
//! dataset's plan and manifest, then every shard not yet on disk labelled with the frozen
//! model's π̂ (a rerun with the same arguments resumes where the last one stopped).

use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};

use super::corpus::{plan_windows, split_of, Corpus, Split};
use super::dataset::{
    create_or_resume, shard_is_complete, write_shard, CorpusInfo, DatasetPlan, LabelledSequence,
    Manifest, FORMAT,
};
use super::saliency::{sequence_saliency, LossSpan};
use crate::model::config::ModelConfig;
use crate::model::llama::Llama;
use crate::prune::schedule::PruneSchedule;
use crate::prune::scorer::model_fingerprint;
use crate::prune::select::mandatory_tail_len;
use crate::report::rfc3339;

/// The shape of the dataset `sdtp saliency` asked for, its flags checked.
pub struct LabelSettings<'a> {
    /// The corpus file, as given (recorded in the manifest).
    pub corpus_path: &'a Path,
    pub seq_len: usize,
    pub stride: usize,
    pub heldout_every: usize,
    pub loss: LossSpan,
    pub max_sequences: Option<usize>,
    pub sequences_per_shard: usize,
    /// `f16` or `f32`.
    pub hidden_dtype: String,
}

/// A corpus's documents tokenized: ids in corpus order and their tokens.
pub struct TokenizedCorpus {
    pub ids: Vec<String>,
    pub tokens: Vec<Vec<u32>>,
}

impl TokenizedCorpus {
    pub fn encode(corpus: &Corpus, encode: impl Fn(&str) -> Result<Vec<u32>>) -> Result<Self> {
        Ok(Self {
            ids: corpus.documents.iter().map(|d| d.id.clone()).collect(),
            tokens: corpus
                .documents
                .iter()
                .map(|d| encode(&d.text))
                .collect::<Result<Vec<_>>>()?,
        })
    }

    /// The `len` tokens of document `doc` from `start`.
    fn window(&self, doc: &str, start: usize, len: usize) -> Result<Vec<u32>> {
        let index = self
            .ids
            .iter()
            .position(|d| d == doc)
            .with_context(|| format!("document {doc} is not in the corpus"))?;
        Ok(self.tokens[index][start..start + len].to_vec())
    }
}

/// The dataset's plan: windows over the documents (cut to `max_sequences`), the train and
/// held-out documents, and the schedule's stages to label. A corpus without a document of
/// `seq_len` tokens is an error.
pub fn plan_dataset(
    corpus: &Corpus,
    docs: &TokenizedCorpus,
    settings: &LabelSettings,
    schedule: &PruneSchedule,
    config: &ModelConfig,
    model_name: String,
) -> Result<DatasetPlan> {
    let lens: Vec<usize> = docs.tokens.iter().map(Vec::len).collect();
    let mut windows = plan_windows(
        &docs.ids,
        &lens,
        settings.seq_len,
        settings.stride,
        settings.heldout_every,
    );
    if windows.is_empty() {
        bail!(
            "corpus {} has no document of {} tokens (the longest has {}); use a shorter --seq-len",
            settings.corpus_path.display(),
            settings.seq_len,
            lens.iter().max().copied().unwrap_or(0)
        );
    }
    if let Some(max) = settings.max_sequences {
        windows.truncate(max);
    }
    let (train_docs, heldout_docs): (Vec<_>, Vec<_>) = docs
        .ids
        .iter()
        .enumerate()
        .partition(|(i, _)| split_of(*i, settings.heldout_every) == Split::Train);
    Ok(DatasetPlan {
        format: FORMAT.to_string(),
        model: model_fingerprint(config),
        model_name,
        hidden_size: config.hidden_size,
        layers: schedule.stages.iter().map(|s| s.layer).collect(),
        schedule: schedule.name.clone(),
        keep_ratios: schedule.stages.iter().map(|s| s.keep_ratio).collect(),
        min_head_tokens: schedule.min_head_tokens,
        min_tail_ratio: schedule.min_tail_ratio,
        seq_len: settings.seq_len,
        stride: settings.stride,
        loss: settings.loss.describe(),
        hidden_dtype: settings.hidden_dtype.clone(),
        corpus: CorpusInfo {
            path: settings.corpus_path.display().to_string(),
            digest: corpus.digest.clone(),
            documents: corpus.documents.len(),
            heldout_every: settings.heldout_every,
            train_documents: train_docs.into_iter().map(|(_, d)| d.clone()).collect(),
            heldout_documents: heldout_docs.into_iter().map(|(_, d)| d.clone()).collect(),
        },
        sequences_per_shard: settings.sequences_per_shard,
        windows,
    })
}

/// Creates the dataset folder `out` for `plan`, or resumes it when it was made with the same
/// plan; returns the manifest on disk.
pub fn create_dataset(
    out: &Path,
    plan: DatasetPlan,
    device: String,
    dtype: String,
) -> Result<Manifest> {
    create_or_resume(
        out,
        Manifest {
            plan,
            created: rfc3339(SystemTime::now()),
            sdtp_version: env!("CARGO_PKG_VERSION").to_string(),
            device,
            dtype,
        },
    )
}

/// Progress of [`label_missing_shards`], for the caller's bar.
pub enum LabelEvent {
    /// A shard already on disk: its sequences count as done.
    Skipped { sequences: usize },
    /// One sequence labelled, with its loss (nats).
    Labelled { loss: f32 },
}

/// Labels every shard of `plan` not yet complete in `out` and writes it; returns how many
/// sequences were labelled now.
pub fn label_missing_shards(
    model: &Llama,
    out: &Path,
    plan: &DatasetPlan,
    docs: &TokenizedCorpus,
    span: LossSpan,
    on_event: &mut dyn FnMut(LabelEvent),
) -> Result<usize> {
    let heldout = plan
        .windows
        .iter()
        .filter(|w| w.split == Split::Heldout)
        .count();
    tracing::info!(
        "{} sequences of {} tokens ({} train, {heldout} held-out) at layers {:?}, {} shards in {}",
        plan.windows.len(),
        plan.seq_len,
        plan.windows.len() - heldout,
        plan.layers,
        plan.num_shards(),
        out.display()
    );
    let tail_queries = mandatory_tail_len(plan.seq_len, plan.min_tail_ratio);
    let mut labelled_now = 0usize;
    for index in 0..plan.num_shards() {
        let range = plan.shard_windows(index);
        if shard_is_complete(out, plan, index) {
            on_event(LabelEvent::Skipped {
                sequences: range.len(),
            });
            tracing::debug!("shard {index} already done");
            continue;
        }
        let shard_started = Instant::now();
        let mut sequences = Vec::with_capacity(range.len());
        for window in range.clone() {
            let w = &plan.windows[window];
            let tokens = docs.window(&w.doc, w.start, plan.seq_len)?;
            let labels = sequence_saliency(model, &tokens, span, &plan.layers, tail_queries)
                .with_context(|| format!("window {window} ({} @ {})", w.doc, w.start))?;
            on_event(LabelEvent::Labelled { loss: labels.loss });
            sequences.push(LabelledSequence {
                window,
                tokens,
                labels,
            });
            labelled_now += 1;
        }
        write_shard(out, plan, index, &sequences)?;
        let secs = shard_started.elapsed().as_secs_f64();
        tracing::info!(
            "shard {}/{}: {} sequences in {secs:.1} s ({:.2} s/sequence)",
            index + 1,
            plan.num_shards(),
            range.len(),
            secs / range.len().max(1) as f64
        );
    }
    Ok(labelled_now)
}
