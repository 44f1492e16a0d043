//! `sdtp eval agreement`: does a pruned prefill leave the model's next-token distribution and
//! its greedy answer as the unpruned run has them?
//!
//! For every prompt the baseline (unpruned) prefill and greedy continuation run once and are
//! compared with every contender (schedule × scorer). The baseline runs on a reference model:
//! the contenders' own model, or the same file loaded with other weights (`--reference-weights`,
//! quantized contenders against the dequantised f32 reference, as llama.cpp's
//! `perplexity --kl-divergence` compares a quantized model with its f16 base):
//! - `first_token_agree`: the arg max of the last-token logits is the same;
//! - `kl`: KL(P_baseline ‖ P_pruned) of the last-token distributions, nats;
//! - `top_k_overlap`: |top-k ∩ top-k| / k of the last-token logits (k = 5 by default);
//! - `continuation_match`: tokens the two greedy continuations share from the start, up to
//!   `continuation_tokens` (32); a pair that is identical to the end, both stopping at the
//!   same end-of-sequence token, counts as the full length.
//! - `flops` / `final_tokens`: the analytic prefill FLOPs (`metrics::flops`) and tokens that
//!   reached the last layer, for the speed side of the trade.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::forward::{greedy_continuation, last_logits, prefill};
use crate::metrics::flops::{prefill_flops, FlopShape, PrefillFlops, ScorerCost};
use crate::metrics::summary::{mean, percentile};
use crate::metrics::{argmax, common_prefix_len, kl_divergence, top_k_overlap};
use crate::model::llama::Llama;
use crate::model::text::TextCodec;
use crate::prune::schedule::PruneSchedule;
use crate::report::{derive_seed, Contender};

/// A tokenized prompt.
#[derive(Debug, Clone)]
pub struct TokenizedPrompt {
    pub id: String,
    pub ids: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct AgreementConfig {
    /// Greedy tokens compared per prompt (0: no continuation).
    pub continuation_tokens: usize,
    /// k of the top-k overlap.
    pub top_k: usize,
    pub seed: u64,
    pub eos_token_ids: Vec<u32>,
}

/// The unpruned run of one prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineRow {
    pub prompt_id: String,
    pub prompt_tokens: usize,
    pub first_token: u32,
    pub first_token_text: String,
    /// The greedy continuation's text (empty when none was asked for).
    pub continuation_text: String,
    pub continuation_tokens: usize,
    /// Analytic prefill FLOPs.
    pub flops: u64,
}

/// One prompt under one contender.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementRow {
    pub prompt_id: String,
    pub mode: String,
    pub prompt_tokens: usize,
    /// Tokens that reached the last layer.
    pub final_tokens: usize,
    pub first_token: u32,
    pub first_token_agree: bool,
    /// KL(P_baseline ‖ P_this), nats, of the last-token distributions.
    pub kl: f64,
    pub top_k_overlap: f64,
    /// Null when no continuation was asked for.
    pub continuation_match: Option<usize>,
    pub continuation_identical: Option<bool>,
    pub continuation_text: Option<String>,
    /// Analytic prefill FLOPs (model only) and the scorer's.
    pub flops: u64,
    pub scorer_flops: u64,
}

/// One contender over all prompts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementSummary {
    pub mode: String,
    pub schedule: String,
    pub scorer: Option<String>,
    pub prompts: usize,
    /// Fraction of prompts whose first greedy token matches the baseline's.
    pub first_token_agreement: f64,
    pub kl_mean: f64,
    /// 99th percentile over prompts (linear interpolation).
    pub kl_p99: f64,
    pub kl_max: f64,
    pub top_k_overlap_mean: f64,
    pub continuation_match_mean: Option<f64>,
    /// Fraction of prompts whose continuation is identical to the baseline's.
    pub continuation_identical: Option<f64>,
    /// Mean over prompts of final_tokens / prompt_tokens.
    pub final_keep_mean: f64,
    /// Σ baseline FLOPs / Σ this contender's (model FLOPs, scorer excluded).
    pub flop_speedup: f64,
    /// 1 − Σ this contender's FLOPs / Σ baseline FLOPs.
    pub flop_reduction: f64,
}

/// Everything one run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementResults {
    pub baseline: Vec<BaselineRow>,
    pub rows: Vec<AgreementRow>,
    pub summary: Vec<AgreementSummary>,
}

/// Runs `prompts` unpruned once each, then under every contender, and compares.
/// `progress` is told about each prompt before it starts.
pub fn run_agreement(
    model: &Llama,
    codec: &TextCodec,
    prompts: &[TokenizedPrompt],
    contenders: &[Contender],
    config: &AgreementConfig,
    progress: &mut dyn FnMut(usize, &TokenizedPrompt),
) -> Result<AgreementResults> {
    run_agreement_against(model, model, codec, prompts, contenders, config, progress)
}

/// [`run_agreement`] with the baseline run on `reference` (the same architecture and
/// vocabulary, e.g. the same file with its matrices dequantised) and the contenders on `model`.
pub fn run_agreement_against(
    reference: &Llama,
    model: &Llama,
    codec: &TextCodec,
    prompts: &[TokenizedPrompt],
    contenders: &[Contender],
    config: &AgreementConfig,
    progress: &mut dyn FnMut(usize, &TokenizedPrompt),
) -> Result<AgreementResults> {
    let n = config.continuation_tokens;
    let mut baseline = Vec::with_capacity(prompts.len());
    let mut rows = Vec::with_capacity(prompts.len() * contenders.len());
    for (index, prompt) in prompts.iter().enumerate() {
        progress(index, prompt);
        let (base, runs) =
            compare_prompt_against(reference, model, index, &prompt.ids, contenders, config)?;
        baseline.push(BaselineRow {
            prompt_id: prompt.id.clone(),
            prompt_tokens: prompt.ids.len(),
            first_token: base.first_token,
            first_token_text: codec.decode(&[base.first_token])?,
            continuation_text: codec.decode(&base.continuation)?,
            continuation_tokens: base.continuation.len(),
            flops: base.flops,
        });
        for (contender, run) in contenders.iter().zip(runs) {
            let (continuation_match, continuation_identical, continuation_text) = match &run
                .continuation
            {
                Some(cont) => {
                    let (matched, identical) = continuation_agreement(&base.continuation, cont, n);
                    (Some(matched), Some(identical), Some(codec.decode(cont)?))
                }
                None => (None, None, None),
            };
            rows.push(AgreementRow {
                prompt_id: prompt.id.clone(),
                mode: contender.mode().to_string(),
                prompt_tokens: prompt.ids.len(),
                final_tokens: run.final_tokens,
                first_token: run.first_token,
                first_token_agree: run.first_token_agree,
                kl: run.kl,
                top_k_overlap: run.top_k_overlap,
                continuation_match,
                continuation_identical,
                continuation_text,
                flops: run.flops.model,
                scorer_flops: run.flops.scorer,
            });
        }
    }
    let summary = summarise(contenders, &baseline, &rows);
    Ok(AgreementResults {
        baseline,
        rows,
        summary,
    })
}

/// One prompt's unpruned run, in token ids.
#[derive(Debug, Clone)]
pub struct BaselineRun {
    pub first_token: u32,
    /// The greedy continuation (empty when none was asked for).
    pub continuation: Vec<u32>,
    /// Analytic prefill FLOPs.
    pub flops: u64,
}

/// One prompt under one contender compared with its unpruned run, in token ids.
#[derive(Debug, Clone)]
pub struct ContenderRun {
    /// Tokens that reached the last layer.
    pub final_tokens: usize,
    pub first_token: u32,
    pub first_token_agree: bool,
    /// KL(P_baseline ‖ P_this), nats, of the last-token distributions.
    pub kl: f64,
    pub top_k_overlap: f64,
    /// The greedy continuation; `None` when none was asked for.
    pub continuation: Option<Vec<u32>>,
    /// Analytic prefill FLOPs of the model and of the scorer.
    pub flops: PrefillFlops,
}

/// Prompt `index` (`ids`) run unpruned, then under every contender (in order), compared: the
/// agreement check of `sdtp eval agreement` and of `sdtp train-predictor --agreement` alike.
/// Every run of the prompt is seeded with `derive_seed(config.seed, [index])`, so a prompt
/// gives the same answer whatever else runs with it.
pub fn compare_prompt(
    model: &Llama,
    index: usize,
    ids: &[u32],
    contenders: &[Contender],
    config: &AgreementConfig,
) -> Result<(BaselineRun, Vec<ContenderRun>)> {
    compare_prompt_against(model, model, index, ids, contenders, config)
}

/// [`compare_prompt`] with the unpruned run on `reference` and the contenders on `model`.
pub fn compare_prompt_against(
    reference: &Llama,
    model: &Llama,
    index: usize,
    ids: &[u32],
    contenders: &[Contender],
    config: &AgreementConfig,
) -> Result<(BaselineRun, Vec<ContenderRun>)> {
    if reference.config().vocab_size != model.config().vocab_size {
        bail!(
            "the reference model's vocabulary ({}) is not the contenders' ({})",
            reference.config().vocab_size,
            model.config().vocab_size
        );
    }
    let shape = FlopShape::from(model.config());
    let n = config.continuation_tokens;
    let seed = derive_seed(config.seed, &[index as u64]);
    let base = prefill(reference, ids, &PruneSchedule::none(), seed)?;
    let base_flops = prefill_flops(&FlopShape::from(reference.config()), &base.stats, None).model;
    let base_logits = last_logits(&base)?;
    let base_first = argmax(&base_logits).unwrap_or(0) as u32;
    let base_cont = greedy_continuation(reference, ids, base, n, &config.eos_token_ids)?;
    let mut runs = Vec::with_capacity(contenders.len());
    for contender in contenders {
        let schedule = &contender.schedule;
        let out = prefill(model, ids, schedule, seed)?;
        let flops = prefill_flops(&shape, &out.stats, ScorerCost::of(schedule));
        let final_tokens = out.final_len();
        let logits = last_logits(&out)?;
        let first = argmax(&logits).unwrap_or(0) as u32;
        let continuation = if n > 0 {
            Some(greedy_continuation(
                model,
                ids,
                out,
                n,
                &config.eos_token_ids,
            )?)
        } else {
            None
        };
        runs.push(ContenderRun {
            final_tokens,
            first_token: first,
            first_token_agree: first == base_first,
            kl: kl_divergence(&base_logits, &logits),
            top_k_overlap: top_k_overlap(&base_logits, &logits, config.top_k),
            continuation,
            flops,
        });
    }
    let base = BaselineRun {
        first_token: base_first,
        continuation: base_cont,
        flops: base_flops,
    };
    Ok((base, runs))
}

/// (matched tokens, identical) of a continuation against the baseline's, out of `max`:
/// the common prefix, or `max` when the two are identical (both ran to `max` tokens or both
/// stopped at the same end-of-sequence).
pub fn continuation_agreement(base: &[u32], other: &[u32], max: usize) -> (usize, bool) {
    if base == other {
        (max, true)
    } else {
        (common_prefix_len(base, other).min(max), false)
    }
}

/// One summary per contender, in contender order, over the rows of that contender.
pub fn summarise(
    contenders: &[Contender],
    baseline: &[BaselineRow],
    rows: &[AgreementRow],
) -> Vec<AgreementSummary> {
    contenders
        .iter()
        .map(|c| {
            let mine: Vec<&AgreementRow> = rows.iter().filter(|r| r.mode == c.mode()).collect();
            let count = mine.len();
            let frac = |k: usize| k as f64 / count.max(1) as f64;
            let kls: Vec<f64> = mine.iter().map(|r| r.kl).collect();
            let matches: Vec<f64> = mine
                .iter()
                .filter_map(|r| r.continuation_match.map(|m| m as f64))
                .collect();
            let identical: Vec<f64> = mine
                .iter()
                .filter_map(|r| r.continuation_identical.map(|b| f64::from(u8::from(b))))
                .collect();
            let base_flops: u64 = mine
                .iter()
                .filter_map(|r| baseline.iter().find(|b| b.prompt_id == r.prompt_id))
                .map(|b| b.flops)
                .sum();
            let flops: u64 = mine.iter().map(|r| r.flops).sum();
            let keeps: Vec<f64> = mine
                .iter()
                .map(|r| r.final_tokens as f64 / r.prompt_tokens.max(1) as f64)
                .collect();
            AgreementSummary {
                mode: c.mode().to_string(),
                schedule: c.info.name.clone(),
                scorer: c.info.scorer.clone(),
                prompts: count,
                first_token_agreement: frac(mine.iter().filter(|r| r.first_token_agree).count()),
                kl_mean: mean(&kls).unwrap_or(0.0),
                kl_p99: percentile(&kls, 0.99).unwrap_or(0.0),
                kl_max: kls.iter().copied().fold(0.0, f64::max),
                top_k_overlap_mean: mean(&mine.iter().map(|r| r.top_k_overlap).collect::<Vec<_>>())
                    .unwrap_or(0.0),
                continuation_match_mean: mean(&matches),
                continuation_identical: mean(&identical),
                final_keep_mean: mean(&keeps).unwrap_or(1.0),
                flop_speedup: if flops > 0 {
                    base_flops as f64 / flops as f64
                } else {
                    1.0
                },
                flop_reduction: if base_flops > 0 {
                    1.0 - flops as f64 / base_flops as f64
                } else {
                    0.0
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_compare_by_prefix_and_identity() {
        assert_eq!(continuation_agreement(&[1, 2, 3], &[1, 2, 3], 3), (3, true));
        // Both stopped at the same end-of-sequence after 2 tokens: the whole answer agrees.
        assert_eq!(continuation_agreement(&[1, 0], &[1, 0], 32), (32, true));
        assert_eq!(
            continuation_agreement(&[1, 2, 3], &[1, 2, 4], 3),
            (2, false)
        );
        assert_eq!(continuation_agreement(&[1, 0], &[1, 2, 3], 32), (1, false));
        assert_eq!(continuation_agreement(&[], &[], 0), (0, true));
    }
}
