//! `prefill_with_pruning`: the model run layer by layer, with SDTP pruning stages between
//! layers, and the length invariants checked at every step. With an empty schedule it is the
//! plain forward pass: there is no second implementation.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Tensor;

use crate::device::synchronize;
use crate::model::cache::KvCache;
use crate::model::llama::{Llama, Positions};
use crate::prune::schedule::{PruneSchedule, Stage};
use crate::prune::scorer::{ScoreInput, Scorer};
use crate::prune::select::{apply_token_pruning, kept_len};

/// A broken invariant of the pruned prefill. Each names the layer, the step and the lengths,
/// so a bug shows up as this error and never as a shape panic deep inside a matmul.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PrefillError {
    #[error("empty prompt: give at least one token")]
    EmptyPrompt,
    #[error(
        "prompt of {len} tokens is longer than the model's context of {max} tokens; shorten it"
    )]
    PromptTooLong { len: usize, max: usize },
    #[error("layer {layer}, {step}: length mismatch (hidden {hidden}, positions {positions}, cache {cache})")]
    LengthMismatch {
        layer: usize,
        step: &'static str,
        hidden: usize,
        positions: usize,
        cache: usize,
    },
    #[error("layer {layer}, {step}: the sequence is empty")]
    EmptySequence { layer: usize, step: &'static str },
    #[error("layer {layer}, pruning: scorer returned {scores} scores for {tokens} tokens")]
    ScoreCount {
        layer: usize,
        scores: usize,
        tokens: usize,
    },
    #[error("layer {layer}, pruning: invalid selection of {kept} of {tokens} tokens: {reason}")]
    BadSelection {
        layer: usize,
        kept: usize,
        tokens: usize,
        reason: &'static str,
    },
}

#[derive(Debug, Clone, Default)]
pub struct PrefillOptions {
    /// Synchronise the device around each layer and record its wall time. Off by default:
    /// the syncs themselves cost time on GPUs.
    pub time_layers: bool,
}

/// Summary of the scores of one pruning stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreSummary {
    pub scorer: String,
    pub min: f32,
    pub max: f32,
    pub mean: f32,
}

/// What one layer did.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerStats {
    pub layer: usize,
    pub tokens_in: usize,
    pub tokens_out: usize,
    pub stage_keep_ratio: Option<f64>,
    pub scores: Option<ScoreSummary>,
    pub wall_ms: Option<f64>,
}

/// Original positions kept by the pruning stage after `layer`.
#[derive(Debug, Clone, PartialEq)]
pub struct StageKept {
    pub layer: usize,
    pub positions: Vec<u32>,
}

pub struct PrefillOutput {
    /// Logits of the last prompt token, (vocab,) f32.
    pub last_logits: Tensor,
    /// Per layer, the keys and values of exactly the tokens that layer saw.
    pub cache: KvCache,
    pub kept: Vec<StageKept>,
    pub stats: Vec<LayerStats>,
    /// Length of the unpruned prompt: decode continues from this position.
    pub prompt_len: usize,
}

impl PrefillOutput {
    /// Tokens that reached the last layer.
    pub fn final_len(&self) -> usize {
        self.stats.last().map_or(self.prompt_len, |s| s.tokens_out)
    }
}

/// Runs `input_ids` through `model`, pruning after each layer `schedule` names, using
/// `scorer` to rank tokens. `schedule` must already be validated for this model.
pub fn prefill_with_pruning(
    model: &Llama,
    input_ids: &[u32],
    schedule: &PruneSchedule,
    scorer: &mut dyn Scorer,
    options: &PrefillOptions,
) -> Result<PrefillOutput> {
    check_prompt(model, input_ids.len())?;
    let num_layers = model.layers().len();
    schedule
        .validate(num_layers)
        .context("prefill was given an invalid schedule")?;
    let prompt_len = input_ids.len();
    scorer.begin_prefill(input_ids, model.sentence_ends());
    let mut hidden = model.embed(input_ids)?;
    let mut positions = model.positions((0..prompt_len as u32).collect())?;
    let mut cache = KvCache::new(num_layers);
    let mut stages = schedule.stages.iter().peekable();
    let mut kept_per_stage = Vec::new();
    let mut stats = Vec::with_capacity(num_layers);

    for (index, layer) in model.layers().iter().enumerate() {
        // This layer has seen nothing yet.
        check_lengths(
            index,
            "before layer",
            &hidden,
            &positions,
            cache.layers[index].len(),
            0,
        )?;
        let stage = stages.next_if(|s| s.layer == index);
        let tokens_in = positions.len();
        let started = start_clock(model, options)?;
        let attended = layer.attend(
            &hidden,
            &positions,
            model.rope(),
            &mut cache.layers[index],
            stage.and_then(|_| scorer.tail_queries(tokens_in)),
        )?;
        // Scores that need only the attention are read now, before the MLP is queued: the
        // device then runs the MLP while the host refines them and chooses the kept tokens.
        let early_scores = match stage {
            Some(_) if scorer.reads_only_attention() => Some(scorer.read_scores(&ScoreInput {
                layer: index,
                hidden: &attended.hidden,
                tail_attention: attended.tail_attention.as_ref(),
                positions: Some(positions.ids()),
            })?),
            _ => None,
        };
        hidden = layer.feed_forward(&attended.hidden)?;
        let seen = cache.layers[index].len();
        check_lengths(index, "after layer", &hidden, &positions, seen, tokens_in)?;
        let mut summary = None;
        if let Some(stage) = stage {
            let scores = match early_scores {
                Some(raw) => scorer.refine(raw, Some(positions.ids()))?,
                None => scorer.score(&ScoreInput {
                    layer: index,
                    hidden: &hidden,
                    tail_attention: attended.tail_attention.as_ref(),
                    positions: Some(positions.ids()),
                })?,
            };
            let kept = select_checked(index, &scores, stage, schedule, tokens_in)?;
            summary = Some(summarise(scorer, &scores));
            let index_tensor = Tensor::new(
                kept.iter()
                    .map(|&i| i as u32)
                    .collect::<Vec<_>>()
                    .as_slice(),
                hidden.device(),
            )?;
            hidden = crate::model::fused::gather_rows(&hidden, &index_tensor)?;
            positions = positions.select(&kept, &index_tensor)?;
            let kept_positions = positions.ids().to_vec();
            check_lengths(index, "after pruning", &hidden, &positions, seen, tokens_in)?;
            kept_per_stage.push(StageKept {
                layer: index,
                positions: kept_positions,
            });
        }
        stats.push(LayerStats {
            layer: index,
            tokens_in,
            tokens_out: positions.len(),
            stage_keep_ratio: stage.map(|s| s.keep_ratio),
            scores: summary,
            wall_ms: stop_clock(model, started)?,
        });
    }
    let last_logits = model.last_logits(&hidden)?;
    Ok(PrefillOutput {
        last_logits,
        cache,
        kept: kept_per_stage,
        stats,
        prompt_len,
    })
}

/// Rejects prompts the model cannot take, before any tensor is made.
pub fn check_prompt(model: &Llama, len: usize) -> Result<(), PrefillError> {
    let max = model.config().max_position_embeddings;
    if len == 0 {
        return Err(PrefillError::EmptyPrompt);
    }
    if len > max {
        return Err(PrefillError::PromptTooLong { len, max });
    }
    Ok(())
}

/// hidden rows == positions, the layer's cache holds `cache_expected` entries, and the
/// sequence is non-empty.
fn check_lengths(
    layer: usize,
    step: &'static str,
    hidden: &Tensor,
    positions: &Positions,
    cache: usize,
    cache_expected: usize,
) -> Result<(), PrefillError> {
    let hidden_len = hidden.dims().get(1).copied().unwrap_or(0);
    if hidden_len != positions.len() || cache != cache_expected {
        return Err(PrefillError::LengthMismatch {
            layer,
            step,
            hidden: hidden_len,
            positions: positions.len(),
            cache,
        });
    }
    if hidden_len == 0 {
        return Err(PrefillError::EmptySequence { layer, step });
    }
    Ok(())
}

/// Runs the selection and verifies its contract: non-empty, strictly increasing, in range,
/// last token kept, and the count the schedule promises.
fn select_checked(
    layer: usize,
    scores: &[f32],
    stage: &Stage,
    schedule: &PruneSchedule,
    tokens: usize,
) -> Result<Vec<usize>, PrefillError> {
    if scores.len() != tokens {
        return Err(PrefillError::ScoreCount {
            layer,
            scores: scores.len(),
            tokens,
        });
    }
    let kept = apply_token_pruning(
        scores,
        stage.keep_ratio,
        schedule.min_head_tokens,
        schedule.min_tail_ratio,
    );
    let bad = |reason| PrefillError::BadSelection {
        layer,
        kept: kept.len(),
        tokens,
        reason,
    };
    if kept.is_empty() {
        return Err(bad("nothing kept"));
    }
    if kept.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("indices not strictly increasing"));
    }
    if kept.last() != Some(&(tokens - 1)) {
        return Err(bad("last token not kept"));
    }
    let expected = kept_len(
        tokens,
        stage.keep_ratio,
        schedule.min_head_tokens,
        schedule.min_tail_ratio,
    );
    if kept.len() != expected {
        return Err(bad("count differs from the schedule's"));
    }
    Ok(kept)
}

fn summarise(scorer: &dyn Scorer, scores: &[f32]) -> ScoreSummary {
    let finite: Vec<f32> = scores.iter().copied().filter(|s| s.is_finite()).collect();
    let (min, max, sum) = finite.iter().fold(
        (f32::INFINITY, f32::NEG_INFINITY, 0f64),
        |(lo, hi, sum), &s| (lo.min(s), hi.max(s), sum + s as f64),
    );
    ScoreSummary {
        scorer: scorer.kind().as_str().to_string(),
        min,
        max,
        mean: (sum / finite.len().max(1) as f64) as f32,
    }
}

fn start_clock(model: &Llama, options: &PrefillOptions) -> Result<Option<Instant>> {
    if !options.time_layers {
        return Ok(None);
    }
    synchronize(model.device())?;
    Ok(Some(Instant::now()))
}

fn stop_clock(model: &Llama, started: Option<Instant>) -> Result<Option<f64>> {
    match started {
        Some(t) => {
            synchronize(model.device())?;
            Ok(Some(t.elapsed().as_secs_f64() * 1e3))
        }
        None => Ok(None),
    }
}
