//! `sdtp eval ruler`: flags checked and samples built before the weights load, then the runs
//! with a progress bar, the table, `--json` and the SVG.

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{bail, Result};
use clap::Args;

use super::common::{open_contenders, unique, ContenderArgs, OutputArgs};
use crate::cli::progress_bar;
use crate::cli::ModelArgs;
use sdtp::eval::report::EvalHeader;
use sdtp::eval::ruler::haystack::Corpus;
use sdtp::eval::ruler::plot::render_ruler_svg;
use sdtp::eval::ruler::report::{RulerReport, RulerSources, TaskInfo};
use sdtp::eval::ruler::run::{run_ruler, RulerConfig};
use sdtp::eval::ruler::sample::{build_samples, RulerSample};
use sdtp::eval::ruler::task::Task;
use sdtp::eval::table;
use sdtp::eval::tokenize::{prompt_wrapper, PromptFormat};
use sdtp::model::load::{codec_before_load, read_config, ModelSource};
use sdtp::model::text::TextCodec;
use sdtp::report::write_atomic;

#[derive(Args, Debug)]
pub struct RulerArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub contenders: ContenderArgs,
    /// Tasks, repeat or comma list: niah_single_1..3, niah_multikey_1..3, niah_multivalue,
    /// niah_multiquery, vt, cwe, fwe. Default: all 11.
    #[arg(long = "tasks", value_delimiter = ',')]
    pub tasks: Vec<String>,
    /// Target prompt lengths in tokens (each prompt is the largest haystack within it);
    /// repeat or comma list.
    #[arg(long = "length", value_delimiter = ',', default_value = "1024")]
    pub lengths: Vec<usize>,
    /// Samples per task × length.
    #[arg(long, default_value_t = 10)]
    pub samples: usize,
    /// Greedy tokens generated for every answer. Default: RULER's per task (niah 128, vt 30,
    /// cwe 120, fwe 50). Decoding stops earlier at end-of-sequence.
    #[arg(long)]
    pub new_tokens: Option<usize>,
    /// raw (default, as passkey) or chat.
    #[arg(long, value_enum, default_value = "raw")]
    pub prompt_format: PromptFormat,
    /// The SVG to write. Default: the --json path with .svg, else debug/eval_ruler.svg.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// The tasks asked for (all when none), checked, repeats dropped.
fn parse_tasks(names: &[String]) -> Result<Vec<Task>> {
    let tasks = names
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::parse::<Task>)
        .collect::<Result<Vec<_>>>()?;
    Ok(if tasks.is_empty() {
        Task::ALL.to_vec()
    } else {
        unique(tasks)
    })
}

pub fn run(args: RulerArgs) -> Result<()> {
    let started = SystemTime::now();
    let tasks = parse_tasks(&args.tasks)?;
    let lengths = unique(args.lengths.iter().copied());
    if args.samples == 0 {
        bail!("--samples 0: run at least one sample per task and length");
    }
    if args.new_tokens == Some(0) {
        bail!("--new-tokens 0: the answer needs at least one token");
    }
    if lengths.is_empty() || lengths.contains(&0) {
        bail!("--length must name lengths of at least 1 token");
    }
    let source = ModelSource::resolve(args.model.model.as_deref())?;
    let context = read_config(&source)?.max_position_embeddings;
    let mut config = RulerConfig {
        tasks,
        lengths,
        samples: args.samples,
        new_tokens: args.new_tokens,
        chat: false,
        sampling: "greedy".to_string(),
        eos_token_ids: Vec::new(),
        seed: args.model.seed,
    };
    for &length in &config.lengths {
        for &task in &config.tasks {
            let new_tokens = config.new_tokens_for(task);
            if length + new_tokens > context {
                bail!(
                    "--length {length} with {new_tokens} new tokens ({task}) is over the model's context of {context} tokens"
                );
            }
        }
    }
    // Every sample is built (and every length checked against every task's template) before
    // the weights load; with the chat template they are built again, wrapped, after it.
    let corpus = Corpus::shipped()?;
    let build = |codec: &TextCodec, wrap: &dyn Fn(&str) -> Result<String>| {
        build_samples(
            &config.tasks,
            &config.lengths,
            config.samples,
            config.seed,
            &corpus,
            &|t| codec.encode(t),
            wrap,
        )
    };
    let mut samples: Vec<RulerSample> =
        build(&codec_before_load(&source)?, &|t| Ok(t.to_string()))?;
    let plot_path = args
        .plot
        .clone()
        .unwrap_or_else(|| match &args.output.json {
            Some(json) => json.with_extension("svg"),
            None => PathBuf::from("debug/eval_ruler.svg"),
        });

    let (session, contenders) = open_contenders(&args.model, &args.contenders)?;
    let loaded = &session.loaded;
    let (wrap, chat) = prompt_wrapper(loaded, args.prompt_format);
    if chat {
        samples = build(&loaded.codec, wrap.as_ref())?;
    }
    config.chat = chat;
    config.eos_token_ids = loaded.eos_token_ids.clone();
    let bar = progress_bar(
        args.output.quiet,
        samples.len() * (1 + contenders.len()),
        "runs",
    )?;
    let results = run_ruler(
        &loaded.model,
        &loaded.codec,
        &samples,
        &contenders,
        &config,
        &mut |sample, mode| {
            bar.set_message(format!(
                "{} @ {} #{} · {mode}",
                sample.id.task, sample.id.length, sample.id.index
            ));
            bar.inc(1);
        },
    )?;
    bar.finish_and_clear();
    let report = RulerReport {
        header: EvalHeader::new("ruler", loaded, session.dtype, session.seed, started),
        tasks: config
            .tasks
            .iter()
            .map(|&t| TaskInfo::new(t, &config))
            .collect(),
        settings: config,
        sources: RulerSources::default(),
        schedules: contenders.iter().map(|c| c.info.clone()).collect(),
        cells: results.cells,
        averages: results.averages,
        rows: results.rows,
    };
    let svg = render_ruler_svg(&report)?;
    args.output.finish(table::ruler_table(&report), &report)?;
    write_atomic(&plot_path, svg.as_bytes())?;
    if !args.output.quiet {
        eprintln!("wrote {}", plot_path.display());
    }
    Ok(())
}
