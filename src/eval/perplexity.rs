//! `sdtp eval perplexity`: perplexity of a text's continuation after a pruned prefill of
//! its beginning, against the same after an unpruned prefill.
//!
//! Chunking: the encoded text is cut into windows of `context + continuation` tokens with
//! stride `context + continuation` (no overlap), from its first token; window w covers tokens
//! `[w·(C+M), (w+1)·(C+M))`, and at most `windows` of them run. In each window the first C
//! tokens are prefilled (pruned under a schedule), then the M continuation tokens are fed by
//! teacher forcing (the true tokens, not the model's) after the prefill's cache, at positions
//! C… (the unpruned positions). Token j of the continuation is scored with the logits before
//! it: the prefill's last logits for j = 0, the logits of token j−1 after that. Every one of
//! the M tokens is scored, so each window contributes M negative log-likelihoods.
//!
//! Besides perplexity (exp of the mean NLL over every scored token of every window), each
//! scored position compares the contender's distribution with the baseline's: KL(P‖Q) and
//! whether the arg max is the same (llama.cpp's "same top p").

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::forward::{last_logits, prefill, teacher_forced_logits};
use crate::metrics::summary::{mean, percentile};
use crate::metrics::{argmax, kl_divergence, nll, perplexity};
use crate::model::llama::Llama;
use crate::prune::schedule::PruneSchedule;
use crate::report::{derive_seed, Contender, BASELINE};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerplexityConfig {
    /// Tokens prefilled per window (C).
    pub context: usize,
    /// Tokens scored per window (M).
    pub continuation: usize,
    /// Windows run at most.
    pub windows: usize,
    /// Stride between window starts: always context + continuation.
    pub stride: usize,
    pub seed: u64,
}

impl PerplexityConfig {
    pub fn new(context: usize, continuation: usize, windows: usize, seed: u64) -> Self {
        Self {
            context,
            continuation,
            windows,
            stride: context + continuation,
            seed,
        }
    }
}

/// Start offsets of the windows that fit in `total` tokens.
pub fn window_starts(total: usize, config: &PerplexityConfig) -> Vec<usize> {
    let size = config.context + config.continuation;
    if size == 0 {
        return Vec::new();
    }
    (0..config.windows)
        .map(|w| w * config.stride)
        .take_while(|start| start + size <= total)
        .collect()
}

/// One window under one mode (the baseline or a contender).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    pub window: usize,
    /// First token of the window in the encoded text.
    pub start: usize,
    pub mode: String,
    /// Context tokens that reached the last layer.
    pub final_tokens: usize,
    pub nll_mean: f64,
    pub perplexity: f64,
    /// Mean KL(P_baseline ‖ P_this) over the scored tokens (0 for the baseline).
    pub kl_mean: f64,
    /// Fraction of scored tokens whose arg max matches the baseline's.
    pub same_top1: f64,
}

/// One mode over all windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerplexitySummary {
    pub mode: String,
    pub schedule: String,
    pub scorer: Option<String>,
    pub windows: usize,
    pub tokens_scored: usize,
    pub perplexity: f64,
    pub baseline_perplexity: f64,
    /// perplexity / baseline_perplexity.
    pub perplexity_ratio: f64,
    /// Mean NLL minus the baseline's, nats per token.
    pub nll_delta: f64,
    pub kl_mean: f64,
    /// 99th percentile over scored tokens.
    pub kl_p99: f64,
    pub same_top1: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerplexityResults {
    pub rows: Vec<WindowRow>,
    /// The baseline first, then each contender.
    pub summary: Vec<PerplexitySummary>,
}

/// Per-token record of one mode, accumulated over windows.
#[derive(Default)]
struct Tally {
    nlls: Vec<f64>,
    kls: Vec<f64>,
    same: usize,
}

/// Runs the baseline and every contender over the windows of `ids`.
pub fn run_perplexity(
    model: &Llama,
    ids: &[u32],
    contenders: &[Contender],
    config: &PerplexityConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PerplexityResults> {
    if config.context == 0 || config.continuation == 0 {
        bail!("--context and --continuation must both be at least 1 token");
    }
    let positions = config.context + config.continuation;
    let max = model.config().max_position_embeddings;
    if positions > max {
        bail!("--context + --continuation = {positions} tokens is over the model's context of {max}; shorten them");
    }
    let starts = window_starts(ids.len(), config);
    if starts.is_empty() {
        bail!(
            "the text has {} tokens, fewer than one window of {positions} (--context + --continuation); use a longer text or shorter windows",
            ids.len()
        );
    }
    let none = PruneSchedule::none();
    let modes: Vec<(&str, &PruneSchedule)> = std::iter::once((BASELINE, &none))
        .chain(contenders.iter().map(|c| (c.mode(), &c.schedule)))
        .collect();
    let mut tallies: Vec<Tally> = modes.iter().map(|_| Tally::default()).collect();
    let mut rows = Vec::new();
    for (w, &start) in starts.iter().enumerate() {
        progress(w, starts.len());
        let seed = derive_seed(config.seed, &[w as u64]);
        let context = &ids[start..start + config.context];
        let continuation = &ids[start + config.context..start + positions];
        let mut base_rows: Vec<Vec<f32>> = Vec::new();
        for (m, (mode, schedule)) in modes.iter().enumerate() {
            let out = prefill(model, context, schedule, seed)?;
            let final_tokens = out.final_len();
            let mut logits = vec![last_logits(&out)?];
            let mut cache = out.cache;
            let fed = &continuation[..config.continuation - 1];
            logits.extend(teacher_forced_logits(
                model,
                &mut cache,
                fed,
                config.context,
            )?);
            let nlls: Vec<f64> = logits
                .iter()
                .zip(continuation)
                .map(|(row, &t)| nll(row, t as usize))
                .collect();
            let (kls, same): (Vec<f64>, usize) = if m == 0 {
                (vec![0.0; logits.len()], logits.len())
            } else {
                let kls = base_rows
                    .iter()
                    .zip(&logits)
                    .map(|(b, o)| kl_divergence(b, o))
                    .collect();
                let same = base_rows
                    .iter()
                    .zip(&logits)
                    .filter(|(b, o)| argmax(b) == argmax(o))
                    .count();
                (kls, same)
            };
            let nll_mean = mean(&nlls).unwrap_or(0.0);
            rows.push(WindowRow {
                window: w,
                start,
                mode: mode.to_string(),
                final_tokens,
                nll_mean,
                perplexity: nll_mean.exp(),
                kl_mean: mean(&kls).unwrap_or(0.0),
                same_top1: same as f64 / logits.len() as f64,
            });
            let tally = &mut tallies[m];
            tally.nlls.extend(&nlls);
            tally.kls.extend(&kls);
            tally.same += same;
            if m == 0 {
                base_rows = logits;
            }
        }
    }
    let base_nll = mean(&tallies[0].nlls).unwrap_or(0.0);
    let base_ppl = perplexity(&tallies[0].nlls).unwrap_or(f64::NAN);
    let summary = modes
        .iter()
        .zip(&tallies)
        .enumerate()
        .map(|(m, ((mode, _), tally))| {
            let info = (m > 0).then(|| &contenders[m - 1].info);
            let ppl = perplexity(&tally.nlls).unwrap_or(f64::NAN);
            PerplexitySummary {
                mode: mode.to_string(),
                schedule: info.map_or_else(|| "none".to_string(), |i| i.name.clone()),
                scorer: info.and_then(|i| i.scorer.clone()),
                windows: starts.len(),
                tokens_scored: tally.nlls.len(),
                perplexity: ppl,
                baseline_perplexity: base_ppl,
                perplexity_ratio: ppl / base_ppl,
                nll_delta: mean(&tally.nlls).unwrap_or(0.0) - base_nll,
                kl_mean: mean(&tally.kls).unwrap_or(0.0),
                kl_p99: percentile(&tally.kls, 0.99).unwrap_or(0.0),
                same_top1: tally.same as f64 / tally.nlls.len().max(1) as f64,
            }
        })
        .collect();
    Ok(PerplexityResults { rows, summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_do_not_overlap_and_fit() {
        let c = PerplexityConfig::new(10, 5, 100, 0);
        assert_eq!(c.stride, 15);
        assert_eq!(window_starts(44, &c), vec![0, 15]);
        assert_eq!(window_starts(45, &c), vec![0, 15, 30]);
        assert!(window_starts(14, &c).is_empty());
        let c = PerplexityConfig::new(10, 5, 2, 0);
        assert_eq!(window_starts(1000, &c), vec![0, 15]);
    }
}
