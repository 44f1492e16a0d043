//! `sdtp eval agreement|perplexity|passkey|ruler|sweep|plot|make-prompts`: argument checks,
//! wiring to `sdtp::eval`, and where the report goes (a markdown table on stdout, `--json`,
//! the sweep's and RULER's SVG). `ruler` has its own module; `common` holds the flag groups,
//! contenders and progress lines the subcommands share.

mod common;
mod ruler;

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use super::session::reference_weights;
use super::{ModelArgs, PlotArgs, Session};
use common::{
    open_contenders, parse_scorers, prompt_progress, step_progress, unique, ContenderArgs,
    OutputArgs, PromptSetArgs,
};
use sdtp::corpus::shipped_documents;
use sdtp::eval::passkey::PasskeyConfig;
use sdtp::eval::perplexity::PerplexityConfig;
use sdtp::eval::prompts::{build_prompt_set, to_jsonl, PromptSetSpec};
use sdtp::eval::report::{read_json, SweepReport};
use sdtp::eval::runs::{
    agreement_report, agreement_settings, passkey_report, perplexity_report, plan_sweep,
    sweep_report, sweep_svg,
};
use sdtp::eval::table;
use sdtp::eval::tokenize::{
    prompt_wrapper, read_text, tokenize_prompt_set, tokenize_text, PromptFormat,
};
use sdtp::model::load::{read_config, ModelSource};
use sdtp::report::write_atomic;

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
    #[command(mut_arg("input", |a| a.help("A report written by `sdtp eval sweep --json`")))]
    Plot(PlotArgs),
    /// Build an agreement prompt set (JSONL) from the shipped text and instruction-style
    /// questions; the default set data/eval/agreement.jsonl was made with it.
    MakePrompts(MakePromptsArgs),
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
    /// auto, quantized or dequantized: the weights of the reference (unpruned) run every
    /// contender is compared with. Default: --weights's (the same model unpruned). When they
    /// differ, the reference is a second load of the model with these weights and the `none`
    /// contender is added: it measures the weights' difference alone (e.g. quantisation
    /// error against --reference-weights dequantized).
    #[arg(long)]
    pub reference_weights: Option<String>,
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

fn agreement(mut args: AgreementArgs) -> Result<()> {
    let started = SystemTime::now();
    args.set.check()?;
    let reference_weights = reference_weights(&args.model, args.reference_weights.as_deref())?;
    let schedules = &mut args.contenders.schedules;
    if reference_weights.is_some() && !schedules.iter().any(|s| s.trim() == "none") {
        // Against another model the unpruned run no longer agrees trivially: it is the
        // measurement of the weights' difference alone, so it runs first.
        schedules.insert(0, "none".to_string());
    }
    let (session, contenders) = open_contenders(&args.model, &args.contenders)?;
    let (prompts, info) = tokenize_prompt_set(
        &session.loaded,
        &args.set.selection(),
        args.continuation_tokens,
    )?;
    let reference = reference_weights
        .map(|w| session.load_reference(&args.model, w))
        .transpose()?;
    let report = agreement_report(
        &session.eval_run(started),
        reference.as_ref(),
        &prompts,
        info,
        &contenders,
        agreement_settings(args.continuation_tokens, args.set.top_k),
        &mut prompt_progress(args.output.quiet, prompts.len(), contenders.len()),
    )?;
    args.output.finish(table::agreement_table(&report), &report)
}

fn perplexity(args: PerplexityArgs) -> Result<()> {
    let started = SystemTime::now();
    if args.context == 0 || args.continuation == 0 || args.windows == 0 {
        bail!("--context, --continuation and --windows must all be at least 1");
    }
    let (text, source) = read_text(args.text_file.as_deref())?;
    let (session, contenders) = open_contenders(&args.model, &args.contenders)?;
    let (ids, info) = tokenize_text(&session.loaded, &text, source)?;
    let config = PerplexityConfig::new(args.context, args.continuation, args.windows, session.seed);
    let report = perplexity_report(
        &session.eval_run(started),
        &ids,
        info,
        &contenders,
        config,
        &mut step_progress(args.output.quiet, "window", contenders.len()),
    )?;
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
    let report = passkey_report(
        &session.eval_run(started),
        wrap.as_ref(),
        &contenders,
        config,
        &mut step_progress(args.output.quiet, "cell", contenders.len()),
    )?;
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
    args.set.check()?;
    // Everything checked before the weights load.
    let source = ModelSource::resolve(args.model.model.as_deref())?;
    let config = read_config(&source)?;
    let settings = agreement_settings(args.continuation_tokens, args.set.top_k);
    let plan = plan_sweep(&args.layers_from, ratios, &kinds, &config, settings)?;
    let plot_path = args
        .plot
        .clone()
        .unwrap_or_else(|| match &args.output.json {
            Some(json) => json.with_extension("svg"),
            None => PathBuf::from("debug/eval_sweep.svg"),
        });
    let (session, _) = Session::open(&args.model, &[])?;
    let (prompts, info) = tokenize_prompt_set(
        &session.loaded,
        &args.set.selection(),
        args.continuation_tokens,
    )?;
    let mut progress = prompt_progress(args.output.quiet, prompts.len(), plan.contenders.len());
    let report = sweep_report(
        &session.eval_run(started),
        &prompts,
        info,
        plan,
        &mut progress,
    )?;
    let svg = sweep_svg(&report)?;
    args.output.finish(table::sweep_table(&report), &report)?;
    write_atomic(&plot_path, svg.as_bytes())?;
    eprintln!("wrote {}", plot_path.display());
    Ok(())
}

fn plot(args: PlotArgs) -> Result<()> {
    let report: SweepReport = read_json(&args.input, "sweep")?;
    let output = args.svg_path();
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
        args.output.display()
    );
    Ok(())
}
