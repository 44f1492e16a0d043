//! The training report `sdtp train-predictor` writes next to the predictor (`<out>.json`, or
//! `<out>.eval.json` for `--evaluate-only`) and the markdown tables it prints: the held-out
//! scorer comparison and the pruned-prefill agreement.

use std::fmt::Write;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::dataset::CorpusInfo;
use super::evaluate::{AgreementStats, ScorerStageStats};
use super::predictor::{EpochLog, SaliencyTarget, TrainConfig};
use crate::prune::schedule::ScorerKind;
use crate::report::write_atomic;

/// Everything `train-predictor` measured, written next to the predictor.
#[derive(Serialize)]
pub struct TrainReport {
    pub model: String,
    pub model_name: String,
    pub schedule: String,
    pub layers: Vec<usize>,
    pub dataset: String,
    pub corpus: CorpusInfo,
    pub train_sequences: usize,
    pub heldout_sequences: usize,
    pub seq_len: usize,
    /// What "true saliency" means in `comparison` and what the predictor learned.
    pub target: SaliencyTarget,
    pub config: ReportConfig,
    pub best_epoch: Vec<usize>,
    pub history: Vec<EpochLog>,
    pub comparison: Vec<ScorerStageStats>,
    pub agreement: Option<AgreementReport>,
    pub train_seconds: f64,
    pub date: String,
    pub git_commit: String,
}

impl TrainReport {
    /// Writes the report as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())
    }
}

/// The training settings, under the flags' names.
#[derive(Serialize)]
pub struct ReportConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub pairs: usize,
    pub mse_weight: f64,
    pub rank_weight: f64,
    pub patience: usize,
    pub seed: u64,
}

impl From<&TrainConfig> for ReportConfig {
    fn from(c: &TrainConfig) -> Self {
        Self {
            epochs: c.max_epochs,
            batch_size: c.batch_size,
            lr: c.learning_rate,
            weight_decay: c.weight_decay,
            pairs: c.pairs_per_sequence,
            mse_weight: c.mse_weight,
            rank_weight: c.rank_weight,
            patience: c.patience,
            seed: c.seed,
        }
    }
}

/// The `--agreement` run: pruned against unpruned prefill on held-out prompts.
#[derive(Serialize)]
pub struct AgreementReport {
    pub prompts: usize,
    pub tokens: usize,
    pub prompt_ids: Vec<String>,
    pub device: String,
    pub dtype: String,
    pub results: Vec<AgreementStats>,
    pub seconds: f64,
}

/// One epoch in a log line: losses, held-out Spearman (mean and per stage) and time.
pub fn epoch_summary(log: &EpochLog) -> String {
    format!(
        "epoch {:>2}: train loss {:.4} (mse {:.4}, rank {:.4}) · held-out Spearman {:.4} [{}] · {:.1} s",
        log.epoch,
        log.train_loss,
        log.train_mse,
        log.train_rank,
        log.heldout_spearman_mean,
        log.heldout_spearman
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" "),
        log.seconds
    )
}

/// The held-out scorer comparison as markdown: a caption, then one table per metric
/// (Spearman ρ, top-k overlap, pruned-set overlap) with a row per stage and their mean.
pub fn comparison_table(
    stats: &[ScorerStageStats],
    layers: &[usize],
    sequences: usize,
    len: usize,
    target: SaliencyTarget,
) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail: the fmt::Result is always Ok.
    let _ = write_comparison(&mut out, stats, layers, sequences, len, target);
    out
}

fn write_comparison(
    out: &mut String,
    stats: &[ScorerStageStats],
    layers: &[usize],
    sequences: usize,
    len: usize,
    target: SaliencyTarget,
) -> std::fmt::Result {
    let kinds: Vec<&str> = ScorerKind::ALL.iter().map(|k| k.as_str()).collect();
    writeln!(
        out,
        "\nheld-out scorers vs the {} target ({sequences} sequences of up to {len} tokens, unpruned model, per stage)",
        target.as_str()
    )?;
    type Metric = fn(&ScorerStageStats) -> f64;
    let metrics: [(&str, Metric); 3] = [
        ("Spearman ρ", |s| s.spearman_mean),
        ("top-k overlap, k = kept", |s| s.top_k_overlap),
        ("pruned-set overlap", |s| s.pruned_overlap),
    ];
    for (title, metric) in metrics {
        writeln!(out, "\n| {title} | k / n | {} |", kinds.join(" | "))?;
        writeln!(out, "| --- | ---: |{}", " ---: |".repeat(kinds.len()))?;
        let mut means = vec![0.0; kinds.len()];
        for &layer in layers {
            let row: Vec<&ScorerStageStats> = kinds
                .iter()
                .filter_map(|k| stats.iter().find(|s| s.scorer == *k && s.layer == layer))
                .collect();
            let (k, n) = row.first().map_or((0, 0), |s| (s.k, s.tokens));
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    means[i] += metric(s) / layers.len() as f64;
                    format!("{:.3}", metric(s))
                })
                .collect();
            writeln!(out, "| layer {layer} | {k} / {n} | {} |", cells.join(" | "))?;
        }
        let cells: Vec<String> = means.iter().map(|m| format!("**{m:.3}**")).collect();
        writeln!(out, "| mean | | {} |", cells.join(" | "))?;
    }
    Ok(())
}

/// The agreement run as markdown: a caption and a row per scorer.
pub fn agreement_table(
    schedule: &str,
    prompts: usize,
    tokens: usize,
    results: &[AgreementStats],
) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail: the fmt::Result is always Ok.
    let _ = write_agreement(&mut out, schedule, prompts, tokens, results);
    out
}

fn write_agreement(
    out: &mut String,
    schedule: &str,
    prompts: usize,
    tokens: usize,
    results: &[AgreementStats],
) -> std::fmt::Result {
    writeln!(
        out,
        "\nagreement with the unpruned prefill: schedule {schedule}, {prompts} held-out prompts of {tokens} tokens"
    )?;
    writeln!(out, "| scorer | first-token agreement | mean KL (nats) | median KL | max KL | tokens at last layer |")?;
    writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |")?;
    for r in results {
        writeln!(
            out,
            "| {} | {:.3} | {:.4} | {:.4} | {:.4} | {:.1} |",
            r.scorer,
            r.first_token_agreement,
            r.kl_mean,
            r.kl_median,
            r.kl_max,
            r.final_tokens_mean
        )?;
    }
    Ok(())
}
