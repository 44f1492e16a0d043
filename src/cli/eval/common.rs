//! What the `sdtp eval` subcommands share: the flag groups (prompt set, output, contenders),
//! the contenders resolved and the model opened with them, and the progress lines on stderr.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::cli::{ModelArgs, PruneArgs, Session};
use sdtp::eval::agreement::TokenizedPrompt;
use sdtp::eval::tokenize::{PromptFormat, PromptSelection};
use sdtp::prune::schedule::{PruneSchedule, ScorerKind};
use sdtp::report::{write_json, Contender};

/// The prompt set of agreement and sweep.
#[derive(Args, Debug, Clone)]
pub struct PromptSetArgs {
    /// A JSONL prompt set ({"id", "text"} per line). Default: the shipped
    /// data/eval/agreement.jsonl (60 prompts of 256–4096 tokens).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Run only the first N prompts (after --max-tokens).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Skip prompts longer than this many tokens (chat template included).
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// chat (default) or raw.
    #[arg(long, value_enum, default_value = "chat")]
    pub prompt_format: PromptFormat,
    /// k of the top-k overlap.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
}

impl PromptSetArgs {
    /// The flags checked before the weights load.
    pub(super) fn check(&self) -> Result<()> {
        if self.limit == Some(0) {
            bail!("--limit 0: run at least one prompt");
        }
        if self.top_k == 0 {
            bail!("--top-k 0: compare at least the top token");
        }
        Ok(())
    }

    pub(super) fn selection(&self) -> PromptSelection<'_> {
        PromptSelection {
            prompts: self.prompts.as_deref(),
            limit: self.limit,
            max_tokens: self.max_tokens,
            format: self.prompt_format,
        }
    }
}

/// Where a report goes besides stdout.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Write the full report as JSON (schema in docs/eval.md); nothing is written on error.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress messages on stderr.
    #[arg(long)]
    pub quiet: bool,
}

impl OutputArgs {
    /// Prints the report's table and writes its JSON where `--json` asked for it.
    pub(super) fn finish<R: serde::Serialize>(&self, table: String, report: &R) -> Result<()> {
        print!("{table}");
        match &self.json {
            Some(path) => write_json(path, report),
            None => Ok(()),
        }
    }
}

/// The schedules × scorers an eval compares with the unpruned run.
#[derive(Args, Debug)]
pub struct ContenderArgs {
    /// Schedules compared with the unpruned run: presets (none, keep09, keep08, keep07,
    /// paper) or TOML files; repeat the flag or give a comma list.
    #[arg(long = "schedule", value_delimiter = ',', default_value = "keep09")]
    pub schedules: Vec<String>,
    /// Scorers each schedule runs with (attention, norm, random, learned if the schedule has
    /// a predictor); repeat or comma list. Default: the schedule's own.
    #[arg(long = "scorer", value_delimiter = ',')]
    pub scorers: Vec<String>,
}

/// `values` in their first-seen order, repeats dropped (flags may repeat a value).
pub(super) fn unique<T: PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Scorer names checked (one-line error on a bad one), repeats dropped.
pub(super) fn parse_scorers(names: &[String]) -> Result<Vec<ScorerKind>> {
    let kinds = names
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::parse::<ScorerKind>)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(unique(kinds))
}

/// Opens the model and resolves schedules × scorers into contenders ("none" once, without a
/// scorer), all checked before the weights load.
pub(super) fn open_contenders(
    model: &ModelArgs,
    wanted: &ContenderArgs,
) -> Result<(Session, Vec<Contender>)> {
    let (schedules, kinds) = (&wanted.schedules, parse_scorers(&wanted.scorers)?);
    let mut prune_args: Vec<PruneArgs> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for name in schedules.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        if names.contains(&name) {
            continue;
        }
        names.push(name);
        let with = |scorer: Option<ScorerKind>| PruneArgs {
            schedule: name.to_string(),
            scorer: scorer.map(|k| k.as_str().to_string()),
            prune_log: PathBuf::new(),
            no_prune_log: true,
        };
        if name == "none" || kinds.is_empty() {
            prune_args.push(with(None));
        } else {
            prune_args.extend(kinds.iter().map(|&k| with(Some(k))));
        }
    }
    if prune_args.is_empty() {
        bail!("no --schedule given; name at least one (e.g. --schedule keep09)");
    }
    let (session, resolved) = Session::open(model, &prune_args.iter().collect::<Vec<_>>())?;
    let num_layers = session.loaded.model.layers().len();
    let mut contenders: Vec<Contender> = Vec::new();
    for (schedule, args) in resolved.into_iter().zip(&prune_args) {
        let mapping = PruneSchedule::resolve(&args.schedule, num_layers)
            .ok()
            .and_then(|r| r.mapping);
        let contender = Contender::new(schedule, mapping);
        if contenders.iter().any(|c| c.mode() == contender.mode()) {
            bail!(
                "two schedules are labelled {:?}; give the TOML files different `name`s",
                contender.mode()
            );
        }
        contenders.push(contender);
    }
    Ok((session, contenders))
}

/// One stderr line per prompt of the agreement loop (none with --quiet).
pub(super) fn prompt_progress(
    quiet: bool,
    total: usize,
    contenders: usize,
) -> impl FnMut(usize, &TokenizedPrompt) {
    move |i, p| {
        if !quiet {
            eprintln!(
                "[{}/{total}] {} ({} tokens): baseline + {contenders} contender(s)",
                i + 1,
                p.id,
                p.ids.len()
            );
        }
    }
}

/// One stderr line per `unit` (window, cell) of a loop, told (index, count) (none with
/// --quiet).
pub(super) fn step_progress(
    quiet: bool,
    unit: &'static str,
    contenders: usize,
) -> impl FnMut(usize, usize) {
    move |i, n| {
        if !quiet {
            eprintln!(
                "[{unit} {}/{n}] baseline + {contenders} contender(s)",
                i + 1
            );
        }
    }
}
