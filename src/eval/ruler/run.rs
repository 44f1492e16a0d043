//! Runs built samples through the unpruned baseline and each contender (the same prefill
//! and greedy decode as every eval), scores the answers as RULER does, and sums up per task ×
//! length × mode and per length × mode.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::sample::RulerSample;
use super::score::Metric;
use super::task::Task;
use crate::eval::evidence::{evidence_tokens, share_by_stage};
use crate::eval::forward::{greedy_continuation, prefill};
use crate::metrics::flops::{prefill_flops, FlopShape, ScorerCost};
use crate::metrics::summary;
use crate::model::llama::Llama;
use crate::model::text::TextCodec;
use crate::prune::schedule::PruneSchedule;
use crate::report::{derive_seed, Contender, BASELINE};

/// What a RULER run covers (the report's `settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulerConfig {
    pub tasks: Vec<Task>,
    /// Target prompt lengths in tokens (each prompt is at most this long).
    pub lengths: Vec<usize>,
    /// Samples per task × length.
    pub samples: usize,
    /// `--new-tokens`: overrides every task's own count when set.
    pub new_tokens: Option<usize>,
    /// Whether the prompt body went through the model's chat template.
    pub chat: bool,
    /// Always "greedy"; decoding stops at end-of-sequence.
    pub sampling: String,
    #[serde(skip)]
    pub eos_token_ids: Vec<u32>,
    pub seed: u64,
}

impl RulerConfig {
    /// Greedy tokens generated for `task`'s answer.
    pub fn new_tokens_for(&self, task: Task) -> usize {
        self.new_tokens.unwrap_or(task.new_tokens())
    }
}

/// One sample under one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulerRow {
    pub task: Task,
    pub length: usize,
    pub sample: usize,
    pub mode: String,
    pub prompt_tokens: usize,
    /// Haystack size in the task's unit.
    pub haystack_units: usize,
    /// Asked depth of the first answer's needle (needle tasks only).
    pub depth: Option<f64>,
    /// Token index of the first answer's needle (vt: of the chain's first statement).
    pub answer_position: Option<usize>,
    /// Tokens that reached the last layer.
    pub final_tokens: usize,
    /// Analytic prefill FLOPs of the model (scorer excluded) and of the scorer.
    pub flops: u64,
    pub scorer_flops: u64,
    /// 1 − flops / the baseline's on the same sample (0 for the baseline).
    pub flop_reduction: f64,
    pub references: Vec<String>,
    pub prediction: String,
    pub generated_tokens: usize,
    /// The task's metric on this sample alone, 0–100.
    pub score: f64,
    /// Share of the prompt's answer tokens (every occurrence of a reference) that reached the
    /// last layer; absent when no reference occurs in the prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_kept: Option<f64>,
    /// The same share after each pruning stage, in stage order, as `[layer, share]`: where a
    /// lost answer was dropped (empty for the baseline or when no reference occurs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence_by_stage: Vec<(usize, f64)>,
}

/// One mode on one task at one length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulerCell {
    pub task: Task,
    pub length: usize,
    pub mode: String,
    pub metric: Metric,
    pub samples: usize,
    /// The metric over the samples, 0–100.
    pub score: f64,
    /// The baseline's score on the same samples.
    pub baseline_score: f64,
    /// Share of samples that earn the same credit as under the baseline.
    pub agreement: f64,
    /// Mean over samples of 1 − this mode's prefill FLOPs / the baseline's.
    pub flop_reduction: f64,
    /// Mean over the samples that have one of [`RulerRow::evidence_kept`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_kept: Option<f64>,
}

/// One mode at one length, averaged over the tasks (each task weighs the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulerAverage {
    pub length: usize,
    pub mode: String,
    pub tasks: usize,
    pub score: f64,
    pub baseline_score: f64,
    pub agreement: f64,
    pub flop_reduction: f64,
    /// Mean over the tasks that have one of [`RulerCell::evidence_kept`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_kept: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulerResults {
    pub rows: Vec<RulerRow>,
    pub cells: Vec<RulerCell>,
    pub averages: Vec<RulerAverage>,
}

/// Runs every sample under the baseline and each contender. `progress` hears each run
/// (sample, mode) before it starts.
pub fn run_ruler(
    model: &Llama,
    codec: &TextCodec,
    samples: &[RulerSample],
    contenders: &[Contender],
    config: &RulerConfig,
    progress: &mut dyn FnMut(&RulerSample, &str),
) -> Result<RulerResults> {
    let shape = FlopShape::from(model.config());
    let none = PruneSchedule::none();
    let modes: Vec<(&str, &PruneSchedule)> = std::iter::once((BASELINE, &none))
        .chain(contenders.iter().map(|c| (c.mode(), &c.schedule)))
        .collect();
    let mut rows = Vec::with_capacity(samples.len() * modes.len());
    for sample in samples {
        let id = sample.id;
        let seed = derive_seed(
            config.seed,
            &[id.task.code(), id.length as u64, id.index as u64, 1],
        );
        let evidence = evidence_tokens(codec, &sample.text, &sample.references)?;
        let mut baseline_flops = 0u64;
        for &(mode, schedule) in &modes {
            progress(sample, mode);
            let out = prefill(model, &sample.ids, schedule, seed)?;
            let evidence_by_stage = share_by_stage(&evidence, &out.kept);
            let evidence_kept = match evidence_by_stage.last() {
                Some(&(_, share)) => Some(share),
                None => (!evidence.is_empty()).then_some(1.0),
            };
            let flops = prefill_flops(&shape, &out.stats, ScorerCost::of(schedule));
            if mode == BASELINE {
                baseline_flops = flops.model;
            }
            let final_tokens = out.final_len();
            let tokens = greedy_continuation(
                model,
                &sample.ids,
                out,
                config.new_tokens_for(id.task),
                &config.eos_token_ids,
            )?;
            let prediction = codec.decode(&tokens)?;
            let credit = id.task.metric().credit(&prediction, &sample.references);
            rows.push(RulerRow {
                task: id.task,
                length: id.length,
                sample: id.index,
                mode: mode.to_string(),
                prompt_tokens: sample.ids.len(),
                haystack_units: sample.haystack_units,
                depth: sample.depth,
                answer_position: sample.answer_position,
                final_tokens,
                flops: flops.model,
                scorer_flops: flops.scorer,
                flop_reduction: 1.0 - flops.model as f64 / baseline_flops.max(1) as f64,
                references: sample.references.clone(),
                prediction,
                generated_tokens: tokens.len(),
                score: credit * 100.0,
                evidence_kept,
                evidence_by_stage,
            });
        }
    }
    let mode_names: Vec<&str> = modes.iter().map(|(m, _)| *m).collect();
    let cells = cells(&rows, &config.tasks, &config.lengths, &mode_names);
    let averages = averages(&cells, &config.lengths, &mode_names);
    Ok(RulerResults {
        rows,
        cells,
        averages,
    })
}

/// Mean of the values present; `None` when none is.
fn mean_of_some(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    summary::mean(&values.flatten().collect::<Vec<_>>())
}

/// Mean of the values; 0 when there are none.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    summary::mean(&values.collect::<Vec<_>>()).unwrap_or(0.0)
}

/// One cell per task × length × mode (in that order) that has rows. A row's `score` is its
/// credit × 100, so the cell's score is their mean: RULER's score over the samples.
pub fn cells(
    rows: &[RulerRow],
    tasks: &[Task],
    lengths: &[usize],
    modes: &[&str],
) -> Vec<RulerCell> {
    let mut out = Vec::new();
    for &task in tasks {
        for &length in lengths {
            let here = |mode: &str| -> Vec<&RulerRow> {
                rows.iter()
                    .filter(|r| r.task == task && r.length == length && r.mode == mode)
                    .collect()
            };
            let baseline = here(BASELINE);
            for &mode in modes {
                let mine = here(mode);
                if mine.is_empty() {
                    continue;
                }
                let same = mine
                    .iter()
                    .filter(|r| {
                        baseline
                            .iter()
                            .find(|b| b.sample == r.sample)
                            .is_some_and(|b| b.score == r.score)
                    })
                    .count();
                out.push(RulerCell {
                    task,
                    length,
                    mode: mode.to_string(),
                    metric: task.metric(),
                    samples: mine.len(),
                    score: mean(mine.iter().map(|r| r.score)),
                    baseline_score: mean(baseline.iter().map(|r| r.score)),
                    agreement: same as f64 / mine.len() as f64,
                    flop_reduction: mean(mine.iter().map(|r| r.flop_reduction)),
                    evidence_kept: mean_of_some(mine.iter().map(|r| r.evidence_kept)),
                });
            }
        }
    }
    out
}

/// One average per length × mode over that mode's task cells.
pub fn averages(cells: &[RulerCell], lengths: &[usize], modes: &[&str]) -> Vec<RulerAverage> {
    let mut out = Vec::new();
    for &length in lengths {
        for &mode in modes {
            let mine: Vec<&RulerCell> = cells
                .iter()
                .filter(|c| c.length == length && c.mode == mode)
                .collect();
            if mine.is_empty() {
                continue;
            }
            out.push(RulerAverage {
                length,
                mode: mode.to_string(),
                tasks: mine.len(),
                score: mean(mine.iter().map(|c| c.score)),
                baseline_score: mean(mine.iter().map(|c| c.baseline_score)),
                agreement: mean(mine.iter().map(|c| c.agreement)),
                flop_reduction: mean(mine.iter().map(|c| c.flop_reduction)),
                evidence_kept: mean_of_some(mine.iter().map(|c| c.evidence_kept)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(task: Task, sample: usize, mode: &str, score: f64, reduction: f64) -> RulerRow {
        RulerRow {
            task,
            length: 512,
            sample,
            mode: mode.to_string(),
            prompt_tokens: 500,
            haystack_units: 10,
            depth: None,
            answer_position: None,
            final_tokens: 500,
            flops: 1,
            scorer_flops: 0,
            flop_reduction: reduction,
            references: vec![],
            prediction: String::new(),
            generated_tokens: 0,
            score,
            evidence_kept: None,
            evidence_by_stage: Vec::new(),
        }
    }

    #[test]
    fn cells_and_averages_by_hand() {
        let p = "keep09/attention";
        let rows = vec![
            row(Task::Vt, 0, BASELINE, 100.0, 0.0),
            row(Task::Vt, 0, p, 60.0, 0.3),
            row(Task::Vt, 1, BASELINE, 40.0, 0.0),
            row(Task::Vt, 1, p, 40.0, 0.5),
            row(Task::Cwe, 0, BASELINE, 0.0, 0.0),
            row(Task::Cwe, 0, p, 0.0, 0.2),
        ];
        let modes = [BASELINE, p];
        let c = cells(&rows, &[Task::Vt, Task::Cwe], &[512], &modes);
        assert_eq!(c.len(), 4);
        let vt = &c[1];
        assert_eq!((vt.task, vt.mode.as_str()), (Task::Vt, p));
        assert_eq!((vt.samples, vt.score, vt.baseline_score), (2, 50.0, 70.0));
        assert_eq!(vt.agreement, 0.5, "sample 1 agrees, sample 0 does not");
        assert!((vt.flop_reduction - 0.4).abs() < 1e-12);
        assert_eq!((c[0].agreement, c[0].flop_reduction), (1.0, 0.0));
        let a = averages(&c, &[512], &modes);
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[1].tasks, a[1].score, a[1].baseline_score),
            (2, 25.0, 35.0)
        );
        assert_eq!(a[1].agreement, 0.75);
        assert!((a[1].flop_reduction - 0.3).abs() < 1e-12);
        assert!(averages(&c, &[1024], &modes).is_empty());
    }
}
