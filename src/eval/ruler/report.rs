//! `sdtp eval ruler --json`: the common eval header, the settings, what each task is, the
//! contenders, and the results (layout in docs/eval.md).

use serde::{Deserialize, Serialize};

use super::run::{RulerAverage, RulerCell, RulerConfig, RulerRow};
use super::score::Metric;
use super::task::Task;
use super::vocab::WORDS_PATH;
use crate::corpus::SHIPPED_TEXT_PATH;
use crate::eval::report::EvalHeader;
use crate::report::ScheduleInfo;

/// One task as run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: Task,
    /// RULER's generator family (niah, variable_tracking, …).
    pub family: String,
    pub metric: Metric,
    /// Greedy tokens generated for the answer (RULER's, or `--new-tokens`).
    pub new_tokens: usize,
    pub description: String,
}

impl TaskInfo {
    pub fn new(task: Task, config: &RulerConfig) -> Self {
        Self {
            name: task,
            family: task.family().to_string(),
            metric: task.metric(),
            new_tokens: config.new_tokens_for(task),
            description: task.description().to_string(),
        }
    }
}

/// The shipped data the haystacks come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulerSources {
    /// The prose haystack (RULER's essays).
    pub prose: String,
    /// Keys and common words.
    pub words: String,
}

impl Default for RulerSources {
    fn default() -> Self {
        Self {
            prose: SHIPPED_TEXT_PATH.to_string(),
            words: WORDS_PATH.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulerReport {
    #[serde(flatten)]
    pub header: EvalHeader,
    pub settings: RulerConfig,
    pub tasks: Vec<TaskInfo>,
    pub sources: RulerSources,
    /// The contenders, in run order (the baseline is implicit).
    pub schedules: Vec<ScheduleInfo>,
    /// Task × length × mode, the baseline's first at each task and length.
    pub cells: Vec<RulerCell>,
    /// Length × mode, over the tasks.
    pub averages: Vec<RulerAverage>,
    /// Sample × mode.
    pub rows: Vec<RulerRow>,
}
