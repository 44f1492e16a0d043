//! Each `sdtp eval` run from a loaded model to its finished report (agreement, perplexity,
//! passkey, sweep): the contenders run against the baseline through the sibling modules'
//! loops and the report is assembled with its provenance. The sweep's points are planned
//! here too, before the weights load, and drawn as SVG.

use std::time::SystemTime;

use anyhow::{bail, Result};
use candle_core::DType;

use super::agreement::{run_agreement_against, AgreementConfig, AgreementResults, TokenizedPrompt};
use super::passkey::{run_passkey, PasskeyConfig};
use super::perplexity::{run_perplexity, PerplexityConfig};
use super::plot::{render_sweep_svg, PlotTitle};
use super::report::{
    AgreementReport, AgreementSettings, EvalHeader, PasskeyFormat, PasskeyReport, PerplexityReport,
    PromptSetInfo, SweepReport, SweepSettings, TextInfo,
};
use super::sweep::{ratio_schedule, sweep_points};
use crate::model::config::ModelConfig;
use crate::model::load::LoadedModel;
use crate::prune::schedule::{PruneSchedule, ScorerKind};
use crate::prune::scorer::check_scorer_before_load;
use crate::report::{Contender, ScheduleInfo};

/// The loaded model of an eval and what its report's header records about the run.
pub struct EvalRun<'a> {
    pub loaded: &'a LoadedModel,
    pub dtype: DType,
    pub seed: u64,
    pub started: SystemTime,
}

impl EvalRun<'_> {
    /// The header of the report of `command`.
    pub fn header(&self, command: &str) -> EvalHeader {
        EvalHeader::new(command, self.loaded, self.dtype, self.seed, self.started)
    }
}

/// The contenders' descriptions, in run order, for a report.
fn schedule_infos(contenders: &[Contender]) -> Vec<ScheduleInfo> {
    contenders.iter().map(|c| c.info.clone()).collect()
}

/// Greedy comparison of `continuation_tokens` tokens and the top-`top_k` overlap, stopping
/// at end-of-sequence.
pub fn agreement_settings(continuation_tokens: usize, top_k: usize) -> AgreementSettings {
    AgreementSettings {
        continuation_tokens,
        top_k,
        sampling: "greedy".to_string(),
        stop_at_eos: true,
    }
}

/// The agreement loop over `prompts`, the baseline on `reference` (else on the run's own
/// model); `progress` is told about each prompt before it starts.
fn agreement_results(
    run: &EvalRun,
    reference: Option<&LoadedModel>,
    prompts: &[TokenizedPrompt],
    contenders: &[Contender],
    settings: &AgreementSettings,
    progress: &mut dyn FnMut(usize, &TokenizedPrompt),
) -> Result<AgreementResults> {
    run_agreement_against(
        &reference.unwrap_or(run.loaded).model,
        &run.loaded.model,
        &run.loaded.codec,
        prompts,
        contenders,
        &AgreementConfig {
            continuation_tokens: settings.continuation_tokens,
            top_k: settings.top_k,
            seed: run.seed,
            eos_token_ids: run.loaded.eos_token_ids.clone(),
        },
        progress,
    )
}

/// `sdtp eval agreement`: every contender against the baseline on `prompts`. The baseline
/// runs on `reference` when given (the same model loaded with other weights,
/// `--reference-weights`), else on the run's own model.
pub fn agreement_report(
    run: &EvalRun,
    reference: Option<&LoadedModel>,
    prompts: &[TokenizedPrompt],
    info: PromptSetInfo,
    contenders: &[Contender],
    settings: AgreementSettings,
    progress: &mut dyn FnMut(usize, &TokenizedPrompt),
) -> Result<AgreementReport> {
    let results = agreement_results(run, reference, prompts, contenders, &settings, progress)?;
    Ok(AgreementReport {
        header: run.header("agreement"),
        reference_weights: reference.map(|r| r.weights.as_str().to_string()),
        settings,
        prompts: info,
        schedules: schedule_infos(contenders),
        summary: results.summary,
        baseline: results.baseline,
        rows: results.rows,
    })
}

/// `sdtp eval perplexity`: the continuation's perplexity after each contender's prefill of
/// the context, window by window of `ids`; `progress(window, windows)`.
pub fn perplexity_report(
    run: &EvalRun,
    ids: &[u32],
    text: TextInfo,
    contenders: &[Contender],
    config: PerplexityConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PerplexityReport> {
    let results = run_perplexity(&run.loaded.model, ids, contenders, &config, progress)?;
    Ok(PerplexityReport {
        header: run.header("perplexity"),
        settings: config,
        text,
        schedules: schedule_infos(contenders),
        summary: results.summary,
        rows: results.rows,
    })
}

/// `sdtp eval passkey`: every (length, depth) cell under the baseline and each contender,
/// prompts wrapped by `wrap`; `progress(cell, cells)`.
pub fn passkey_report(
    run: &EvalRun,
    wrap: &dyn Fn(&str) -> Result<String>,
    contenders: &[Contender],
    config: PasskeyConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PasskeyReport> {
    let results = run_passkey(
        &run.loaded.model,
        &run.loaded.codec,
        wrap,
        contenders,
        &config,
        progress,
    )?;
    Ok(PasskeyReport {
        header: run.header("passkey"),
        settings: config,
        format: PasskeyFormat::default(),
        schedules: schedule_infos(contenders),
        cells: results.cells,
        rows: results.rows,
    })
}

/// A sweep's points before the weights load: one contender per keep ratio × scorer on the
/// layers of `layers_from`, each checked against the model's config.
pub struct SweepPlan {
    pub contenders: Vec<Contender>,
    /// The keep ratio of each contender.
    pub point_ratios: Vec<f64>,
    pub settings: SweepSettings,
}

/// Plans the sweep of `ratios` × `kinds` on the stages of the schedule `layers_from` (a
/// preset or TOML file), which must prune.
pub fn plan_sweep(
    layers_from: &str,
    ratios: Vec<f64>,
    kinds: &[ScorerKind],
    config: &ModelConfig,
    agreement: AgreementSettings,
) -> Result<SweepPlan> {
    let resolution = PruneSchedule::resolve(layers_from, config.num_hidden_layers)?;
    let template = resolution.schedule;
    if template.stages.is_empty() {
        bail!(
            "--layers-from {layers_from} has no stages; use a schedule that prunes (e.g. keep09)"
        );
    }
    let mut contenders = Vec::new();
    let mut point_ratios = Vec::new();
    for &r in &ratios {
        for &kind in kinds {
            let schedule = ratio_schedule(&template, r, kind);
            schedule.validate(config.num_hidden_layers)?;
            check_scorer_before_load(&schedule, config)?;
            contenders.push(Contender::new(schedule, resolution.mapping.clone()));
            point_ratios.push(r);
        }
    }
    Ok(SweepPlan {
        contenders,
        point_ratios,
        settings: SweepSettings {
            keep_ratios: ratios,
            scorers: kinds.iter().map(|k| k.as_str().to_string()).collect(),
            layers_from: layers_from.to_string(),
            layers: template.stages.iter().map(|s| s.layer).collect(),
            agreement,
        },
    })
}

/// `sdtp eval sweep`: the agreement loop over every planned point, reduced to the points of
/// the speed–fidelity trade.
pub fn sweep_report(
    run: &EvalRun,
    prompts: &[TokenizedPrompt],
    info: PromptSetInfo,
    plan: SweepPlan,
    progress: &mut dyn FnMut(usize, &TokenizedPrompt),
) -> Result<SweepReport> {
    let results = agreement_results(
        run,
        None,
        prompts,
        &plan.contenders,
        &plan.settings.agreement,
        progress,
    )?;
    Ok(SweepReport {
        header: run.header("sweep"),
        settings: plan.settings,
        prompts: info,
        schedules: schedule_infos(&plan.contenders),
        points: sweep_points(&results.summary, &plan.point_ratios),
        summary: results.summary,
        baseline: results.baseline,
        rows: results.rows,
    })
}

/// The SVG of a sweep report's points, titled with its provenance.
pub fn sweep_svg(report: &SweepReport) -> Result<String> {
    let h = &report.header;
    render_sweep_svg(
        &report.points,
        &PlotTitle {
            model: &h.run.model.name,
            device: &h.run.device,
            dtype: &h.run.dtype,
            git_commit: &h.run.git_commit,
            prompts: report.prompts.run,
        },
    )
}
