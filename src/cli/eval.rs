//! `sdtp eval agreement|perplexity|passkey|ruler|sweep|plot|make-prompts`: argument checks,
//! wiring to `crate::eval`, and where the report goes (a markdown table on stdout, `--json`,
//! the sweep's and RULER's SVG). `ruler` has its own module.

mod ruler;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use super::{ModelArgs, PruneArgs, Session};
use crate::eval::agreement::{run_agreement, AgreementConfig, AgreementResults, TokenizedPrompt};
use crate::eval::passkey::{run_passkey, PasskeyConfig};
use crate::eval::perplexity::{run_perplexity, PerplexityConfig};
use crate::eval::plot::{render_sweep_svg, PlotTitle};
use crate::eval::prompts::{build_prompt_set, load_prompts, to_jsonl, PromptSetSpec};
use crate::eval::report::{
    read_json, write_json, AgreementReport, AgreementSettings, Contender, EvalHeader,
    PasskeyFormat, PasskeyReport, PerplexityReport, PromptSetInfo, SweepReport, SweepSettings,
    TextInfo,
};
use crate::eval::sweep::{ratio_schedule, sweep_points};
use crate::eval::table;
use crate::model::load::{read_config, LoadedModel, ModelSource};
use crate::model::text::apply_chat_template;
use crate::profile::prompt::{shipped_documents, shipped_text, SHIPPED_TEXT_PATH};
use crate::profile::report::write_atomic;
use crate::prune::schedule::{PruneSchedule, ScorerKind};
use crate::prune::scorer::check_scorer_before_load;

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: EvalCommand,
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Compare schedules × scorers with the unpruned run on a prompt set: first-token
    /// agreement, KL of the last-token distributions, top-k overlap, identical greedy
    /// continuation.
    Agreement(AgreementArgs),
    /// Perplexity of a text's continuation after a pruned prefill of its beginning, against
    /// the unpruned prefill.
    Perplexity(PerplexityArgs),
    /// llama.cpp-style passkey retrieval over lengths and depths, baseline against schedules.
    Passkey(PasskeyArgs),
    /// NVIDIA RULER's synthetic tasks (needles in haystacks, variable tracking, common and
    /// frequent words) over lengths, baseline against schedules, with an SVG of score
    /// against FLOP reduction.
    Ruler(ruler::RulerArgs),
    /// Keep ratios × scorers on one schedule's layers: a table and an SVG Pareto plot of
    /// prefill FLOP reduction against agreement.
    Sweep(SweepArgs),
    /// Redraw the SVG of a `sdtp eval sweep --json` report.
    Plot(PlotArgs),
    /// Build an agreement prompt set (JSONL) from the shipped text and instruction-style
    /// questions; the default set data/eval/agreement.jsonl was made with it.
    MakePrompts(MakePromptsArgs),
}

/// How prompts are fed to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PromptFormat {
    /// Wrapped in the model's chat template as one user turn (raw when it has none).
    Chat,
    /// The text as is.
    Raw,
}

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
    fn finish<R: serde::Serialize>(&self, table: String, report: &R) -> Result<()> {
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

#[derive(Args, Debug)]
pub struct AgreementArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub contenders: ContenderArgs,
    #[command(flatten)]
    pub set: PromptSetArgs,
    /// Greedy tokens compared per prompt (0: compare the first token only).
    #[arg(long, default_value_t = 32)]
    pub continuation_tokens: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub contenders: ContenderArgs,
    /// A UTF-8 text file to score. Default: the shipped book (data/text/eighty_days.jsonl).
    #[arg(long)]
    pub text_file: Option<PathBuf>,
    /// Tokens prefilled (and pruned) per window.
    #[arg(long, default_value_t = 1024)]
    pub context: usize,
    /// Tokens scored after the context per window (teacher forcing).
    #[arg(long, default_value_t = 128)]
    pub continuation: usize,
    /// Windows run at most; windows do not overlap (stride = context + continuation).
    #[arg(long, default_value_t = 4)]
    pub windows: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct PasskeyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub contenders: ContenderArgs,
    /// Prompt lengths in tokens; repeat or comma list.
    #[arg(
        long = "length",
        value_delimiter = ',',
        default_value = "512,1024,2048,4096"
    )]
    pub lengths: Vec<usize>,
    /// Depths of the key, 0 (start) to 1 (end); repeat or comma list.
    #[arg(long = "depth", value_delimiter = ',', default_value = "0,0.5,1")]
    pub depths: Vec<f64>,
    /// Keys tried per (length, depth).
    #[arg(long, default_value_t = 1)]
    pub trials: usize,
    /// Greedy tokens generated for the answer.
    #[arg(long, default_value_t = 12)]
    pub new_tokens: usize,
    /// raw (default, as llama.cpp's passkey) or chat.
    #[arg(long, value_enum, default_value = "raw")]
    pub prompt_format: PromptFormat,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Keep ratios applied at every stage of --layers-from; repeat or comma list.
    #[arg(
        long = "keep-ratio",
        value_delimiter = ',',
        default_value = "0.9,0.8,0.7,0.6,0.5"
    )]
    pub keep_ratios: Vec<f64>,
    /// Scorers; repeat or comma list (learned needs a --layers-from TOML with a predictor).
    #[arg(
        long = "scorer",
        value_delimiter = ',',
        default_value = "attention,norm,random"
    )]
    pub scorers: Vec<String>,
    /// The schedule (preset or TOML) whose layers every point prunes after.
    #[arg(long, default_value = "keep09")]
    pub layers_from: String,
    #[command(flatten)]
    pub set: PromptSetArgs,
    /// Greedy tokens compared per prompt (0, the default: first token and KL only).
    #[arg(long, default_value_t = 0)]
    pub continuation_tokens: usize,
    /// The SVG to write. Default: the --json path with .svg, else debug/eval_sweep.svg.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A report written by `sdtp eval sweep --json`.
    #[arg(long)]
    pub input: PathBuf,
    /// The SVG to write (default: the input with .svg).
    #[arg(long)]
    pub output: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct MakePromptsArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The JSONL file to write.
    #[arg(long, default_value = "data/eval/agreement.jsonl")]
    pub output: PathBuf,
    #[arg(long, default_value_t = 60)]
    pub count: usize,
    /// Shortest prompt, in tokens of the model's tokenizer.
    #[arg(long, default_value_t = 256)]
    pub min_tokens: usize,
    /// Longest prompt, in tokens of the model's tokenizer.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens: usize,
}

pub fn run(args: EvalArgs) -> Result<()> {
    match args.command {
        EvalCommand::Agreement(a) => agreement(a),
        EvalCommand::Perplexity(a) => perplexity(a),
        EvalCommand::Passkey(a) => passkey(a),
        EvalCommand::Ruler(a) => ruler::run(a),
        EvalCommand::Sweep(a) => sweep(a),
        EvalCommand::Plot(a) => plot(a),
        EvalCommand::MakePrompts(a) => make_prompts(a),
    }
}

/// `values` in their first-seen order, repeats dropped (flags may repeat a value).
fn unique<T: PartialEq>(values: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// Scorer names checked (one-line error on a bad one), repeats dropped.
fn parse_scorers(names: &[String]) -> Result<Vec<ScorerKind>> {
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
fn open_contenders(model: &ModelArgs, wanted: &ContenderArgs) -> Result<(Session, Vec<Contender>)> {
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

/// Turns a prompt's text into what is fed to the tokenizer.
type Wrap<'a> = Box<dyn Fn(&str) -> Result<String> + 'a>;

/// What turns a prompt's text into what is fed: the chat template, or the text as is.
/// Returns the wrapper and whether the template is used (a model without one runs raw).
fn prompt_wrapper(loaded: &LoadedModel, format: PromptFormat) -> (Wrap<'_>, bool) {
    match (format, loaded.chat_template.as_deref()) {
        (PromptFormat::Chat, Some(template)) => (
            Box::new(move |text: &str| {
                apply_chat_template(template, text, &loaded.bos_token, &loaded.eos_token)
            }),
            true,
        ),
        (PromptFormat::Chat, None) => {
            tracing::warn!("this model has no chat template; prompts are fed as raw text");
            (Box::new(|text: &str| Ok(text.to_string())), false)
        }
        (PromptFormat::Raw, _) => (Box::new(|text: &str| Ok(text.to_string())), false),
    }
}

/// The prompt set tokenized, filtered by --max-tokens and cut to --limit.
fn tokenized_prompts(
    session: &Session,
    set: &PromptSetArgs,
    continuation_tokens: usize,
) -> Result<(Vec<TokenizedPrompt>, PromptSetInfo)> {
    if set.limit == Some(0) {
        bail!("--limit 0: run at least one prompt");
    }
    if set.top_k == 0 {
        bail!("--top-k 0: compare at least the top token");
    }
    let (prompts, source) = load_prompts(set.prompts.as_deref())?;
    let loaded = &session.loaded;
    let (wrap, chat) = prompt_wrapper(loaded, set.prompt_format);
    let context = loaded.model.config().max_position_embeddings;
    let vocab = loaded.model.config().vocab_size;
    let mut out = Vec::new();
    for p in &prompts {
        if set.limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let ids = loaded.codec.encode(&wrap(&p.text)?)?;
        if ids.is_empty() {
            bail!("prompt {:?} encodes to no tokens", p.id);
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            bail!(
                "prompt {:?} encodes to token {bad}, outside the model's vocabulary of {vocab}",
                p.id
            );
        }
        if set.max_tokens.is_some_and(|m| ids.len() > m) {
            continue;
        }
        if ids.len() + continuation_tokens > context {
            bail!(
                "prompt {:?} has {} tokens; with {continuation_tokens} continuation tokens it is over the model's context of {context}; use --max-tokens",
                p.id,
                ids.len()
            );
        }
        out.push(TokenizedPrompt {
            id: p.id.clone(),
            ids,
        });
    }
    if out.is_empty() {
        bail!("no prompt of {source} is within --max-tokens");
    }
    let lens: Vec<usize> = out.iter().map(|p| p.ids.len()).collect();
    let info = PromptSetInfo {
        source,
        in_set: prompts.len(),
        run: out.len(),
        limit: set.limit,
        max_tokens: set.max_tokens,
        chat,
        tokens_min: lens.iter().copied().min().unwrap_or(0),
        tokens_max: lens.iter().copied().max().unwrap_or(0),
        tokens_mean: lens.iter().sum::<usize>() as f64 / lens.len() as f64,
    };
    Ok((out, info))
}

fn agreement_settings(continuation_tokens: usize, top_k: usize) -> AgreementSettings {
    AgreementSettings {
        continuation_tokens,
        top_k,
        sampling: "greedy".to_string(),
        stop_at_eos: true,
    }
}

/// Runs the agreement loop with progress on stderr.
fn run_agreement_loop(
    session: &Session,
    prompts: &[TokenizedPrompt],
    contenders: &[Contender],
    continuation_tokens: usize,
    top_k: usize,
    quiet: bool,
) -> Result<AgreementResults> {
    let loaded = &session.loaded;
    let total = prompts.len();
    run_agreement(
        &loaded.model,
        &loaded.codec,
        prompts,
        contenders,
        &AgreementConfig {
            continuation_tokens,
            top_k,
            seed: session.seed,
            eos_token_ids: loaded.eos_token_ids.clone(),
        },
        &mut |i, p| {
            if !quiet {
                eprintln!(
                    "[{}/{total}] {} ({} tokens): baseline + {} contender(s)",
                    i + 1,
                    p.id,
                    p.ids.len(),
                    contenders.len()
                );
            }
        },
    )
}

fn agreement(args: AgreementArgs) -> Result<()> {
    let started = SystemTime::now();
    let (session, contenders) = open_contenders(&args.model, &args.contenders)?;
    let (prompts, info) = tokenized_prompts(&session, &args.set, args.continuation_tokens)?;
    let results = run_agreement_loop(
        &session,
        &prompts,
        &contenders,
        args.continuation_tokens,
        args.set.top_k,
        args.output.quiet,
    )?;
    let report = AgreementReport {
        header: EvalHeader::new(
            "agreement",
            &session.loaded,
            session.dtype,
            session.seed,
            started,
        ),
        settings: agreement_settings(args.continuation_tokens, args.set.top_k),
        prompts: info,
        schedules: contenders.iter().map(|c| c.info.clone()).collect(),
        summary: results.summary,
        baseline: results.baseline,
        rows: results.rows,
    };
    args.output.finish(table::agreement_table(&report), &report)
}

fn perplexity(args: PerplexityArgs) -> Result<()> {
    let started = SystemTime::now();
    if args.context == 0 || args.continuation == 0 || args.windows == 0 {
        bail!("--context, --continuation and --windows must all be at least 1");
    }
    let text = match &args.text_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read text file {}", path.display()))?,
        None => shipped_text()?,
    };
    let source = args.text_file.as_ref().map_or_else(
        || SHIPPED_TEXT_PATH.to_string(),
        |p| p.display().to_string(),
    );
    let (session, contenders) = open_contenders(&args.model, &args.contenders)?;
    let loaded = &session.loaded;
    let ids = loaded.codec.encode(&text)?;
    let vocab = loaded.model.config().vocab_size;
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        bail!("the text encodes to token {bad}, outside the model's vocabulary of {vocab}");
    }
    let config = PerplexityConfig::new(args.context, args.continuation, args.windows, session.seed);
    let quiet = args.output.quiet;
    let results = run_perplexity(&loaded.model, &ids, &contenders, &config, &mut |w, n| {
        if !quiet {
            eprintln!(
                "[window {}/{n}] baseline + {} contender(s)",
                w + 1,
                contenders.len()
            );
        }
    })?;
    let report = PerplexityReport {
        header: EvalHeader::new("perplexity", loaded, session.dtype, session.seed, started),
        settings: config,
        text: TextInfo {
            source,
            tokens: ids.len(),
        },
        schedules: contenders.iter().map(|c| c.info.clone()).collect(),
        summary: results.summary,
        rows: results.rows,
    };
    args.output
        .finish(table::perplexity_table(&report), &report)
}

fn passkey(args: PasskeyArgs) -> Result<()> {
    let started = SystemTime::now();
    if args.trials == 0 || args.new_tokens == 0 {
        bail!("--trials and --new-tokens must both be at least 1");
    }
    if let Some(d) = args.depths.iter().find(|d| !(0.0..=1.0).contains(*d)) {
        bail!("--depth {d} is outside [0, 1]");
    }
    let source = ModelSource::resolve(args.model.model.as_deref())?;
    let context = read_config(&source)?.max_position_embeddings;
    if let Some(&l) = args
        .lengths
        .iter()
        .find(|&&l| l + args.new_tokens > context + 1)
    {
        bail!(
            "--length {l} with {} new tokens is over the model's context of {context} tokens",
            args.new_tokens
        );
    }
    let lengths = unique(args.lengths.iter().copied());
    let (session, contenders) = open_contenders(&args.model, &args.contenders)?;
    let loaded = &session.loaded;
    let (wrap, chat) = prompt_wrapper(loaded, args.prompt_format);
    let config = PasskeyConfig {
        lengths,
        depths: args.depths.clone(),
        trials: args.trials,
        new_tokens: args.new_tokens,
        chat,
        eos_token_ids: loaded.eos_token_ids.clone(),
        seed: session.seed,
    };
    let quiet = args.output.quiet;
    let results = run_passkey(
        &loaded.model,
        &loaded.codec,
        wrap.as_ref(),
        &contenders,
        &config,
        &mut |i, n| {
            if !quiet {
                eprintln!(
                    "[cell {}/{n}] baseline + {} contender(s)",
                    i + 1,
                    contenders.len()
                );
            }
        },
    )?;
    let report = PasskeyReport {
        header: EvalHeader::new("passkey", loaded, session.dtype, session.seed, started),
        settings: config,
        format: PasskeyFormat::default(),
        schedules: contenders.iter().map(|c| c.info.clone()).collect(),
        cells: results.cells,
        rows: results.rows,
    };
    args.output.finish(table::passkey_table(&report), &report)
}

fn sweep(args: SweepArgs) -> Result<()> {
    let started = SystemTime::now();
    let kinds = parse_scorers(&args.scorers)?;
    if kinds.is_empty() {
        bail!("no --scorer given; name at least one (attention, norm, random)");
    }
    if let Some(r) = args.keep_ratios.iter().find(|r| !(**r > 0.0 && **r <= 1.0)) {
        bail!("--keep-ratio {r} is outside (0, 1]");
    }
    let ratios = unique(args.keep_ratios.iter().copied());
    if ratios.is_empty() {
        bail!("no --keep-ratio given");
    }
    // Everything checked before the weights load.
    let source = ModelSource::resolve(args.model.model.as_deref())?;
    let config = read_config(&source)?;
    let resolution = PruneSchedule::resolve(&args.layers_from, config.num_hidden_layers)?;
    let template = resolution.schedule;
    if template.stages.is_empty() {
        bail!(
            "--layers-from {} has no stages; use a schedule that prunes (e.g. keep09)",
            args.layers_from
        );
    }
    let mut contenders = Vec::new();
    let mut point_ratios = Vec::new();
    for &r in &ratios {
        for &kind in &kinds {
            let schedule = ratio_schedule(&template, r, kind);
            schedule.validate(config.num_hidden_layers)?;
            check_scorer_before_load(&schedule, &config)?;
            contenders.push(Contender::new(schedule, resolution.mapping.clone()));
            point_ratios.push(r);
        }
    }
    let plot_path = args
        .plot
        .clone()
        .unwrap_or_else(|| match &args.output.json {
            Some(json) => json.with_extension("svg"),
            None => PathBuf::from("debug/eval_sweep.svg"),
        });
    let (session, _) = Session::open(&args.model, &[])?;
    let (prompts, info) = tokenized_prompts(&session, &args.set, args.continuation_tokens)?;
    let results = run_agreement_loop(
        &session,
        &prompts,
        &contenders,
        args.continuation_tokens,
        args.set.top_k,
        args.output.quiet,
    )?;
    let points = sweep_points(&results.summary, &point_ratios);
    let report = SweepReport {
        header: EvalHeader::new(
            "sweep",
            &session.loaded,
            session.dtype,
            session.seed,
            started,
        ),
        settings: SweepSettings {
            keep_ratios: ratios,
            scorers: kinds.iter().map(|k| k.as_str().to_string()).collect(),
            layers_from: args.layers_from.clone(),
            layers: template.stages.iter().map(|s| s.layer).collect(),
            agreement: agreement_settings(args.continuation_tokens, args.set.top_k),
        },
        prompts: info,
        schedules: contenders.iter().map(|c| c.info.clone()).collect(),
        points,
        summary: results.summary,
        baseline: results.baseline,
        rows: results.rows,
    };
    let svg = sweep_svg(&report)?;
    args.output.finish(table::sweep_table(&report), &report)?;
    write_atomic(&plot_path, svg.as_bytes())?;
    eprintln!("wrote {}", plot_path.display());
    Ok(())
}

fn sweep_svg(report: &SweepReport) -> Result<String> {
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

fn plot(args: PlotArgs) -> Result<()> {
    let report: SweepReport = read_json(&args.input, "sweep")?;
    let output = args
        .output
        .unwrap_or_else(|| args.input.with_extension("svg"));
    write_atomic(&output, sweep_svg(&report)?.as_bytes())?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

fn make_prompts(args: MakePromptsArgs) -> Result<()> {
    if args.count == 0 {
        bail!("--count 0: make at least one prompt");
    }
    let (session, _) = Session::open(&args.model, &[])?;
    let codec = &session.loaded.codec;
    let spec = PromptSetSpec {
        count: args.count,
        min_tokens: args.min_tokens,
        max_tokens: args.max_tokens,
        seed: session.seed,
    };
    let prompts = build_prompt_set(&shipped_documents()?, &spec, &|text: &str| {
        Ok(codec.encode(text)?.len())
    })?;
    write_atomic(&args.output, to_jsonl(&prompts)?.as_bytes())?;
    let tokens: usize = prompts.iter().filter_map(|p| p.approx_tokens).sum();
    eprintln!(
        "wrote {} prompts ({tokens} tokens in all, by {}) to {}",
        prompts.len(),
        session.model_name(),
        display(&args.output)
    );
    Ok(())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
