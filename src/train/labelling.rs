//! The labelling run of `sdtp saliency`: the corpus tokenized and cut into windows, the
//! dataset's plan and manifest, then every shard not yet on disk labelled with the frozen
//! model's π̂ (a rerun with the same arguments resumes where the last one stopped).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};

use super::corpus::{plan_windows, split_of, Corpus, Split, WindowPlan};
use super::dataset::{
    create_or_resume, shard_is_complete, write_shard, CorpusInfo, DatasetPlan, LabelledSequence,
    Manifest, RulerPlan, FORMAT,
};
use super::saliency::{sequence_saliency, LossSpan};
use crate::model::config::ModelConfig;
use crate::model::llama::Llama;
use crate::prune::schedule::{AttentionScoring, PruneSchedule};
use crate::prune::scorer::model_fingerprint;
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

/// A prompt labelled by the loss of its answer (a RULER-style sample): the answer follows the
/// prompt in the labelled sequence, and only the prompt's tokens are scored and stored.
#[derive(Debug, Clone)]
pub struct AnsweredPrompt {
    /// Unique within the dataset, e.g. `ruler:niah_single_1:1024:3`.
    pub id: String,
    pub prompt: Vec<u32>,
    pub answer: Vec<u32>,
}

/// The answered prompts a dataset labels besides its corpus windows, and how they were made.
pub struct AnsweredPrompts<'a> {
    pub plan: RulerPlan,
    pub prompts: &'a [AnsweredPrompt],
}

/// Trailing queries whose attention a stage's inputs average over `n` prompt tokens: what
/// the schedule's scoring window asks for at inference (`AttentionScoring::queries`).
pub fn stored_tail_queries(plan: &DatasetPlan, n: usize) -> usize {
    AttentionScoring {
        window: plan.tail_queries,
        ..AttentionScoring::default()
    }
    .queries(n, plan.min_tail_ratio)
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
    answered: Option<&AnsweredPrompts>,
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
    // Answered prompts after the windows; every `heldout_every`-th of them is held out.
    let mut longest = settings.seq_len;
    if let Some(answered) = answered {
        for (i, p) in answered.prompts.iter().enumerate() {
            if p.prompt.is_empty() || p.answer.is_empty() {
                bail!("answered prompt {} has an empty prompt or answer", p.id);
            }
            if p.prompt.len() + p.answer.len() > config.max_position_embeddings {
                bail!(
                    "answered prompt {} has {} tokens with its answer, over the model's context of {}",
                    p.id,
                    p.prompt.len() + p.answer.len(),
                    config.max_position_embeddings
                );
            }
            longest = longest.max(p.prompt.len());
            windows.push(WindowPlan {
                doc: p.id.clone(),
                start: 0,
                split: split_of(i, settings.heldout_every),
            });
        }
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
        attention_heads: config.num_attention_heads,
        tail_queries: schedule.attention.window,
        layers: schedule.stages.iter().map(|s| s.layer).collect(),
        schedule: schedule.name.clone(),
        keep_ratios: schedule.stages.iter().map(|s| s.keep_ratio).collect(),
        min_head_tokens: schedule.min_head_tokens,
        min_tail_ratio: schedule.min_tail_ratio,
        seq_len: settings.seq_len,
        row_len: longest,
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
        ruler: answered.map(|a| a.plan.clone()),
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
    answered: &[AnsweredPrompt],
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
    let answered: HashMap<&str, &AnsweredPrompt> =
        answered.iter().map(|p| (p.id.as_str(), p)).collect();
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
            // A corpus window is its own prompt, labelled by the plan's loss; an answered
            // prompt is labelled by the loss of its answer.
            let (ids, prompt_len, span) = match answered.get(w.doc.as_str()) {
                Some(p) => (
                    [p.prompt.as_slice(), p.answer.as_slice()].concat(),
                    p.prompt.len(),
                    LossSpan::Last(p.answer.len()),
                ),
                None => (
                    docs.window(&w.doc, w.start, plan.seq_len)?,
                    plan.seq_len,
                    span,
                ),
            };
            let queries = stored_tail_queries(plan, prompt_len);
            let labels = sequence_saliency(model, &ids, prompt_len, span, &plan.layers, queries)
                .with_context(|| format!("window {window} ({} @ {})", w.doc, w.start))?;
            on_event(LabelEvent::Labelled { loss: labels.loss });
            sequences.push(LabelledSequence {
                window,
                tokens: ids[..prompt_len].to_vec(),
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
