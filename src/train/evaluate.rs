//! How good is a predictor? Two measurements, both on held-out documents only:
//!
//! - [`compare_scorers`]: per stage, on the dataset's held-out sequences (unpruned model),
//!   Spearman correlation of each scorer's scores with π̂ and the overlap of the tokens each
//!   would keep with the tokens π̂ would keep (top-k, k = the stage's kept count), for the
//!   learned predictor, the attention scorer, norm and random — all through the very
//!   `Scorer` implementations inference uses.
//! - [`agreement`]: the pruned prefill against the unpruned one on whole prompts: does the
//!   next token stay the same, and how far does the next-token distribution move (KL)? The
//!   comparison and its seeding are `sdtp eval agreement`'s own (`eval::agreement`).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::corpus::{apportion, split_of, spread_starts, Split};
use super::dataset::{hidden_f32, StoredSequence};
use super::metrics::{spearman, top_k_overlap};
use crate::corpus::Document;
use crate::eval::agreement::{compare_prompt, AgreementConfig};
use crate::metrics::summary::{mean, mean_sd, median};
use crate::model::llama::Llama;
use crate::model::text::TextCodec;
use crate::prune::schedule::{AttentionScoring, PruneSchedule, ScorerKind};
use crate::prune::scorer::{build_scorer, ScoreInput};
use crate::prune::select::kept_len;
use crate::report::Contender;

/// One scorer at one stage, over the held-out sequences.
#[derive(Debug, Clone, Serialize)]
pub struct ScorerStageStats {
    pub scorer: String,
    pub layer: usize,
    pub spearman_mean: f64,
    pub spearman_sd: f64,
    /// Mean |top-k(scores) ∩ top-k(π̂)| / k with k the stage's kept count.
    pub top_k_overlap: f64,
    /// The same for the pruned tokens: |bottom(n−k) ∩ bottom(n−k)| / (n−k).
    pub pruned_overlap: f64,
    pub k: usize,
    pub tokens: usize,
    pub sequences: usize,
}

/// `schedule` with `kind` as its scorer (and `predictor` when it is `learned`).
pub fn with_scorer(
    schedule: &PruneSchedule,
    kind: ScorerKind,
    predictor: Option<&Path>,
) -> PruneSchedule {
    let mut s = schedule.clone();
    s.scorer = Some(kind);
    s.predictor = match kind {
        ScorerKind::Learned => predictor.map(Path::to_path_buf),
        _ => None,
    };
    s
}

/// Spearman and top-k overlap per (scorer, stage) on `heldout`, whose stages are the
/// schedule's, in order. `predictor` is needed for `learned`.
pub fn compare_scorers(
    model: &crate::model::config::ModelConfig,
    schedule: &PruneSchedule,
    kinds: &[ScorerKind],
    predictor: Option<&Path>,
    heldout: &[&StoredSequence],
    seed: u64,
) -> Result<Vec<ScorerStageStats>> {
    let device = candle_core::Device::Cpu;
    let mut out = Vec::new();
    for &kind in kinds {
        // Scored as the legacy scorer reads the stored per-head attention (mean over heads,
        // no pooling, sentences or carry; the learned scorer's refinement is the same), so
        // every scorer is compared on its raw read.
        let s = PruneSchedule {
            attention: AttentionScoring::LEGACY,
            ..with_scorer(schedule, kind, predictor)
        };
        let mut scorer = build_scorer(&s, model, &device, seed)?;
        for (k, stage) in schedule.stages.iter().enumerate() {
            let (mut rhos, mut tops, mut pruned) = (Vec::new(), Vec::new(), Vec::new());
            let (mut kept, mut tokens) = (0, 0);
            for seq in heldout {
                let st = &seq.stages[k];
                // The scorers run on the CPU, wherever the dataset was loaded.
                let hidden = hidden_f32(st)?.to_device(&device)?.unsqueeze(0)?;
                let heads = st.heads.to_device(&device)?;
                let n = st.saliency.len();
                let scores = scorer.score(&ScoreInput {
                    layer: stage.layer,
                    hidden: &hidden,
                    tail_attention: Some(&heads),
                    positions: None,
                })?;
                let keep = kept_len(
                    n,
                    stage.keep_ratio,
                    schedule.min_head_tokens,
                    schedule.min_tail_ratio,
                );
                (kept, tokens) = (keep, n);
                if let Some(rho) = spearman(&scores, &st.saliency) {
                    rhos.push(rho);
                }
                tops.push(top_k_overlap(&scores, &st.saliency, keep));
                let neg = |v: &[f32]| v.iter().map(|x| -x).collect::<Vec<f32>>();
                pruned.push(top_k_overlap(&neg(&scores), &neg(&st.saliency), n - keep));
            }
            let (spearman_mean, spearman_sd) = mean_sd(&rhos);
            out.push(ScorerStageStats {
                scorer: kind.as_str().to_string(),
                layer: stage.layer,
                spearman_mean,
                spearman_sd,
                top_k_overlap: mean_sd(&tops).0,
                pruned_overlap: mean_sd(&pruned).0,
                k: kept,
                tokens,
                sequences: heldout.len(),
            });
        }
    }
    Ok(out)
}

/// A held-out prompt of exactly the asked length, cut from one document.
#[derive(Debug, Clone)]
pub struct HeldoutPrompt {
    pub id: String,
    pub ids: Vec<u32>,
}

/// `count` prompts of `tokens` tokens from the held-out documents (`split_of(index,
/// heldout_every)`), spread over them in proportion to how many windows each can give and
/// evenly inside each. Errors when no held-out document is long enough.
pub fn heldout_prompts(
    codec: &TextCodec,
    documents: &[Document],
    heldout_every: usize,
    count: usize,
    tokens: usize,
) -> Result<Vec<HeldoutPrompt>> {
    let mut docs = Vec::new();
    for (i, doc) in documents.iter().enumerate() {
        if split_of(i, heldout_every) == Split::Heldout {
            docs.push((doc.id.clone(), codec.encode(&doc.text)?));
        }
    }
    let room: Vec<usize> = docs
        .iter()
        .map(|(_, ids)| (ids.len() + 1).saturating_sub(tokens))
        .collect();
    if room.iter().all(|&r| r == 0) {
        anyhow::bail!(
            "no held-out document has {tokens} tokens; use a shorter --agreement-tokens or a corpus with longer documents"
        );
    }
    let counts = apportion(&room, count);
    let mut prompts = Vec::with_capacity(count);
    for ((id, ids), n) in docs.iter().zip(counts) {
        for start in spread_starts(ids.len(), tokens, n) {
            prompts.push(HeldoutPrompt {
                id: format!("{id}@{start}"),
                ids: ids[start..start + tokens].to_vec(),
            });
        }
    }
    Ok(prompts)
}

/// One scorer's agreement with the unpruned run over all prompts.
#[derive(Debug, Clone, Serialize)]
pub struct AgreementStats {
    pub scorer: String,
    pub prompts: usize,
    /// Fraction of prompts whose arg-max next token equals the unpruned run's.
    pub first_token_agreement: f64,
    /// KL(P_unpruned ‖ P_pruned) of the next-token distribution, nats.
    pub kl_mean: f64,
    pub kl_median: f64,
    pub kl_max: f64,
    /// Mean tokens that reached the last layer.
    pub final_tokens_mean: f64,
}

/// Runs every prompt unpruned and under `schedule` with each scorer of `kinds`, through
/// `eval::agreement::compare_prompt` (so prompt i's runs are seeded as `sdtp eval agreement`
/// seeds them, from `seed` and i). `progress(i)` is called before prompt i.
pub fn agreement(
    model: &Llama,
    prompts: &[HeldoutPrompt],
    schedule: &PruneSchedule,
    kinds: &[ScorerKind],
    predictor: Option<&Path>,
    seed: u64,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<AgreementStats>> {
    let contenders: Vec<Contender> = kinds
        .iter()
        .map(|&k| Contender::new(with_scorer(schedule, k, predictor), None))
        .collect();
    let config = AgreementConfig {
        continuation_tokens: 0,
        top_k: 1,
        seed,
        eos_token_ids: Vec::new(),
    };
    // (agree, kl, final tokens) per scorer and prompt.
    let mut results: Vec<Vec<(bool, f64, usize)>> = vec![Vec::new(); kinds.len()];
    for (i, prompt) in prompts.iter().enumerate() {
        progress(i);
        let (_, runs) = compare_prompt(model, i, &prompt.ids, &contenders, &config)
            .with_context(|| format!("prompt {}", prompt.id))?;
        for (k, run) in runs.into_iter().enumerate() {
            results[k].push((run.first_token_agree, run.kl, run.final_tokens));
        }
    }
    Ok(kinds
        .iter()
        .zip(results)
        .map(|(kind, rows)| {
            let n = rows.len().max(1) as f64;
            let mut kls: Vec<f64> = rows.iter().map(|r| r.1).collect();
            kls.sort_by(f64::total_cmp);
            AgreementStats {
                scorer: kind.as_str().to_string(),
                prompts: rows.len(),
                first_token_agreement: rows.iter().filter(|r| r.0).count() as f64 / n,
                kl_mean: mean(&kls).unwrap_or(0.0),
                kl_median: median(&kls).unwrap_or(f64::NAN),
                kl_max: kls.last().copied().unwrap_or(f64::NAN),
                final_tokens_mean: rows.iter().map(|r| r.2 as f64).sum::<f64>() / n,
            }
        })
        .collect())
}
