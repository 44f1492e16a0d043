//! `sdtp profile end2end|prefill|plot|prompt|synthetic-gguf`: argument checks, wiring to
//! `sdtp::profile`, and where the report goes (stdout, `--json`, `--csv`).

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::{Args, Subcommand};

use super::{progress_bar, ModelArgs, PlotArgs, PruneArgs, Session};
use sdtp::corpus::SHIPPED_TEXT_PATH;
use sdtp::device::{copy_probe_bytes, copy_rate_bytes_per_s};
use sdtp::model::config::ModelConfig;
use sdtp::model::load::{read_config, ModelSource};
use sdtp::model::quant::SyntheticQuant;
use sdtp::model::synthetic_gguf::{
    check_exportable, write_synthetic_gguf as write_synthetic_gguf_to,
};
use sdtp::profile::harness::{self, HarnessConfig, ProfileKind, Sinks};
use sdtp::profile::memory::PeakMemory;
use sdtp::profile::prompt::PromptSource;
use sdtp::profile::report::{
    MemoryInfo, ProfileReport, PromptInfo, Roofline, Settings, SCHEMA_VERSION,
};
use sdtp::profile::table::{render_markdown, render_table, Format};
use sdtp::profile::{plot, report};
use sdtp::prune::schedule::PruneSchedule;
use sdtp::prune_log::{new_run_id, PruneLog};
use sdtp::report::{write_atomic, write_atomic_with, Contender, RunInfo};

#[derive(Args, Debug)]
pub struct ProfileArgs {
    #[command(subcommand)]
    pub command: ProfileCommand,
}

#[derive(Subcommand, Debug)]
pub enum ProfileCommand {
    /// Prefill then decode: prefill, time to first token, decode tokens/s and total time of
    /// the unpruned baseline and each schedule, with speedups.
    End2end(RunArgs),
    /// Prefill and first token only, baseline against each schedule.
    Prefill(RunArgs),
    /// Draw an SVG of a `--json` report: prefill time and speedup against prompt length.
    #[command(mut_arg("input", |a| a.help("A report written by `sdtp profile … --json`")))]
    Plot(PlotArgs),
    /// Print the text of the first N tokens of the shipped benchmark text (a prompt file
    /// for `sdtp generate`).
    Prompt(PromptArgs),
    /// Write a synthetic model (random quantized weights of a published shape) as a GGUF
    /// file, so that another runner (llama.cpp's llama-bench) is timed on the very weights
    /// sdtp runs; sdtp loads the file back as the same model.
    SyntheticGguf(SyntheticGgufArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt lengths in tokens: repeat the flag or give a comma list (--length 1024,4096).
    #[arg(long = "length", value_delimiter = ',', required = true)]
    pub lengths: Vec<usize>,
    /// Schedules compared with the unpruned baseline (which always runs): presets (keep09,
    /// keep08, keep07, paper) or TOML files; repeat the flag or give a comma list.
    #[arg(long = "schedule", value_delimiter = ',', default_value = "keep09")]
    pub schedules: Vec<String>,
    /// Override the schedules' scorer: learned, attention, norm or random.
    #[arg(long)]
    pub scorer: Option<String>,
    /// Tokens generated per end2end run (default 128; always exactly this many: end of
    /// sequence does not stop a profiled run).
    #[arg(long)]
    pub new_tokens: Option<usize>,
    /// Measured repetitions per length and mode.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Unmeasured runs per length and mode before the measured ones.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Write the full report (every repetition) as JSON; schema in docs/profile.md.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write one summary row per length and mode as CSV.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// How stdout shows the report.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Skip lengths the model's context cannot take, with a message, instead of failing.
    #[arg(long)]
    pub skip_too_long: bool,
    /// No progress bar and no progress messages on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Per-layer JSONL log of every measured pruned prefill (baseline and warm-ups are not
    /// logged).
    #[arg(long, default_value = "debug/prune_log.jsonl")]
    pub prune_log: PathBuf,
    /// Write no prune log.
    #[arg(long)]
    pub no_prune_log: bool,
}

#[derive(Args, Debug)]
pub struct PromptArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Tokens of the shipped text to print.
    #[arg(long)]
    pub length: usize,
}

#[derive(Args, Debug)]
pub struct SyntheticGgufArgs {
    /// synthetic:<preset> with a llama-architecture shape (llama2-7b, llama3-8b, mistral-7b,
    /// smollm2-135m, tiny).
    #[arg(long)]
    pub model: String,
    /// Block type of the matrices: q4_0, q8_0 or q4_k.
    #[arg(long)]
    pub quant: String,
    /// Seed of the random blocks (the same --seed gives the same weights as
    /// `--model synthetic:<preset> --quant <type>`).
    #[arg(long, default_value_t = 299_792_458)]
    pub seed: u64,
    /// The GGUF file to write (replaced whole once complete).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: ProfileArgs) -> Result<()> {
    match args.command {
        ProfileCommand::End2end(run_args) => {
            let new_tokens = run_args.new_tokens.unwrap_or(128);
            if new_tokens == 0 {
                bail!("--new-tokens 0: end2end needs at least one token; use `sdtp profile prefill` to time the prefill alone");
            }
            profile(run_args, ProfileKind::End2End { new_tokens })
        }
        ProfileCommand::Prefill(run_args) => {
            if run_args.new_tokens.is_some() {
                bail!("`sdtp profile prefill` generates only the first token; use `sdtp profile end2end --new-tokens N` to time decoding");
            }
            profile(run_args, ProfileKind::Prefill)
        }
        ProfileCommand::Plot(plot_args) => plot_report(plot_args),
        ProfileCommand::Prompt(prompt_args) => print_prompt(prompt_args),
        ProfileCommand::SyntheticGguf(gguf_args) => write_synthetic_gguf(gguf_args),
    }
}

/// Positions a run of `length` prompt tokens needs: the prompt and every generated token
/// but the last, which is sampled and never fed back.
fn positions_needed(length: usize, kind: ProfileKind) -> usize {
    length + kind.generated_tokens() - 1
}

/// The lengths to run, in the order given without repeats; lengths the context cannot
/// take are an error, or skipped with a message under `--skip-too-long`.
fn checked_lengths(args: &RunArgs, config: &ModelConfig, kind: ProfileKind) -> Result<Vec<usize>> {
    let context = config.max_position_embeddings;
    let mut lengths = Vec::new();
    for &length in &args.lengths {
        if length == 0 {
            bail!("--length 0: a prompt needs at least one token");
        }
        if lengths.contains(&length) {
            continue;
        }
        let needed = positions_needed(length, kind);
        if needed > context {
            let generation = match kind {
                ProfileKind::End2End { new_tokens } => format!(" with {new_tokens} new tokens"),
                ProfileKind::Prefill => String::new(),
            };
            let message = format!(
                "length {length}{generation} is above the model's context of {context} tokens \
                 (it needs {needed} positions)"
            );
            if args.skip_too_long {
                eprintln!("skipped: {message}");
                continue;
            }
            match (context + 1).saturating_sub(kind.generated_tokens()) {
                0 => bail!("{message}; use fewer --new-tokens"),
                max => bail!("{message}; use a --length of at most {max}"),
            }
        }
        lengths.push(length);
    }
    if lengths.is_empty() {
        bail!("no --length fits the model's context of {context} tokens");
    }
    Ok(lengths)
}

/// The schedules to compare, "none" dropped (the baseline always runs), names unique.
fn schedule_args(args: &RunArgs) -> Result<Vec<PruneArgs>> {
    let mut out: Vec<PruneArgs> = Vec::new();
    for name in args.schedules.iter().map(|s| s.trim()) {
        if name.is_empty() || name == "none" {
            continue;
        }
        if out.iter().any(|p| p.schedule == name) {
            bail!("--schedule {name} is given twice");
        }
        out.push(PruneArgs {
            schedule: name.to_string(),
            scorer: args.scorer.clone(),
            prune_log: args.prune_log.clone(),
            no_prune_log: args.no_prune_log,
        });
    }
    Ok(out)
}

fn profile(args: RunArgs, kind: ProfileKind) -> Result<()> {
    if args.repeats == 0 {
        bail!("--repeats 0: at least one measured repetition is needed");
    }
    let started = SystemTime::now();
    // Everything that can be checked without the weights is checked before they load, and
    // before any output file exists.
    let source = ModelSource::resolve(args.model.model.as_deref())?;
    let config = read_config(&source)?;
    let lengths = checked_lengths(&args, &config, kind)?;
    let prune_args = schedule_args(&args)?;
    let (session, schedules) = Session::open(&args.model, &prune_args.iter().collect::<Vec<_>>())?;
    let model = &session.loaded.model;
    let num_layers = model.layers().len();

    let mut contenders = vec![Contender::baseline()];
    for (schedule, pa) in schedules.into_iter().zip(&prune_args) {
        let mapping = PruneSchedule::resolve(&pa.schedule, num_layers)
            .ok()
            .and_then(|r| r.mapping);
        if contenders.iter().any(|c| c.info.mode == schedule.name) {
            bail!(
                "two schedules are named {:?}; give the TOML files different `name`s",
                schedule.name
            );
        }
        contenders.push(Contender::schedule(schedule, mapping));
    }

    // The decode roofline: the device's copy rate, once, before any run (end2end only).
    let roofline = match kind {
        ProfileKind::End2End { .. } => Some(measure_roofline(model.device())?),
        ProfileKind::Prefill => None,
    };

    // Tokenisation: once, outside every clock.
    let prompts = PromptSource::shipped(&session.loaded.codec, model.config().vocab_size)?;
    let runs = lengths.len() * (args.warmup + args.repeats) * contenders.len();
    let progress = progress_bar(args.quiet, runs, "runs")?;
    if !args.quiet && progress.is_hidden() {
        eprintln!(
            "profiling {} length(s) × {} mode(s) × ({} warm-up + {} measured) = {runs} runs",
            lengths.len(),
            contenders.len(),
            args.warmup,
            args.repeats
        );
    }
    let mut prune_log = if args.no_prune_log || contenders.len() < 2 {
        None
    } else {
        Some(PruneLog::open(&args.prune_log)?)
    };
    let model_name = session.model_name();
    let run_id = new_run_id();
    let results = harness::run(
        model,
        &prompts,
        &contenders,
        &HarnessConfig {
            kind,
            lengths: &lengths,
            repeats: args.repeats,
            warmup: args.warmup,
            seed: session.seed,
            model_name: &model_name,
            copy_rate_bytes_per_s: roofline.as_ref().map(|r| r.copy_rate_gb_s * 1e9),
        },
        &mut Sinks {
            progress: &progress,
            prune_log: prune_log.as_mut(),
            run_id: &run_id,
        },
    )?;
    progress.finish_and_clear();

    let memory = PeakMemory::for_device(model.device());
    let report = ProfileReport {
        run: RunInfo::new(
            SCHEMA_VERSION,
            kind.name(),
            &session.loaded,
            session.dtype,
            started,
        ),
        settings: Settings {
            repeats: args.repeats,
            warmup: args.warmup,
            new_tokens: match kind {
                ProfileKind::End2End { new_tokens } => new_tokens,
                ProfileKind::Prefill => 0,
            },
            seed: session.seed,
            sampling: "greedy".to_string(),
            stop_at_eos: false,
            order: "abba".to_string(),
        },
        prompt: PromptInfo {
            source: SHIPPED_TEXT_PATH.to_string(),
            source_tokens: prompts.len(),
            bos: false,
        },
        memory: MemoryInfo {
            kind: memory.kind(),
            description: memory.describe().to_string(),
        },
        roofline,
        schedules: contenders.iter().map(|c| c.info.clone()).collect(),
        results,
    };
    emit(&report, &args)
}

/// Measures the copy rate decode bandwidth is compared with (`device::copy_rate_bytes_per_s`).
fn measure_roofline(device: &Device) -> Result<Roofline> {
    let rate = copy_rate_bytes_per_s(device).context("cannot measure the device's copy rate")?;
    let bytes = copy_probe_bytes(device);
    let mib = bytes >> 20;
    let what = if device.is_cpu() {
        let threads = candle_core::utils::get_num_threads();
        let plural = if threads == 1 { "" } else { "s" };
        format!("memcpy of {mib} MiB over {threads} thread{plural}")
    } else {
        format!("device-to-device copy of {mib} MiB")
    };
    Ok(Roofline {
        copy_rate_gb_s: rate / 1e9,
        probe_bytes: bytes as u64,
        description: format!("{what}, bytes read + written, median of 5 after a warm-up"),
    })
}

/// Prints the report in `--format` and writes `--json` / `--csv`.
fn emit(report: &ProfileReport, args: &RunArgs) -> Result<()> {
    let json = report.to_json()?;
    let csv = report.to_csv();
    let shown = match args.format {
        Format::Table => render_table(report),
        Format::Md => render_markdown(report),
        Format::Csv => csv.clone(),
        Format::Json => json.clone(),
    };
    print!("{shown}");
    if let Some(path) = &args.json {
        write_atomic(path, json.as_bytes())?;
    }
    if let Some(path) = &args.csv {
        write_atomic(path, csv.as_bytes())?;
    }
    Ok(())
}

fn plot_report(args: PlotArgs) -> Result<()> {
    let report = report::ProfileReport::read(&args.input)?;
    let output = args.svg_path();
    let svg = plot::render_svg(&report)?;
    write_atomic(&output, svg.as_bytes())?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

fn print_prompt(args: PromptArgs) -> Result<()> {
    if args.length == 0 {
        bail!("--length 0: a prompt needs at least one token");
    }
    let (session, _) = Session::open(&args.model, &[])?;
    let codec = &session.loaded.codec;
    let prompts = PromptSource::shipped(codec, session.loaded.model.config().vocab_size)?;
    let prompt = prompts.take(args.length);
    let text = codec.decode(&prompt.ids)?;
    let again = codec.encode(&text)?.len();
    if again != args.length {
        eprintln!(
            "note: the text of {} tokens encodes back to {again} tokens (a cut inside a word)",
            args.length
        );
    }
    print!("{text}");
    Ok(())
}

fn write_synthetic_gguf(args: SyntheticGgufArgs) -> Result<()> {
    let Some(preset) = args.model.strip_prefix("synthetic:") else {
        bail!(
            "--model {}: `sdtp profile synthetic-gguf` writes synthetic models only; name one as synthetic:<preset>",
            args.model
        );
    };
    let SyntheticQuant(quant) = args.quant.parse()?;
    check_exportable(preset, quant)?;
    if args.out.is_dir() {
        bail!(
            "--out {} is a folder; give the path of the .gguf file to write",
            args.out.display()
        );
    }
    let written = write_atomic_with(&args.out, |file| {
        write_synthetic_gguf_to(preset, quant, args.seed, file)
    })?;
    eprintln!(
        "wrote {} ({} tensors, {:.2} GB): synthetic:{preset} --quant {} --seed {}",
        args.out.display(),
        written.tensors,
        written.bytes as f64 / 1e9,
        args.quant.to_ascii_lowercase(),
        args.seed
    );
    Ok(())
}
