//! The `sdtp` command line: clap types and the wiring from arguments to the library.
//! Model logic lives in the library modules; this only connects and prints.

mod eval;
mod generate;
mod profile;
mod session;
mod train;

use clap::{Args, Parser, Subcommand};

pub use session::Session;

/// Long-context Llama-family inference with Saliency-driven Dynamic Token Pruning (SDTP).
#[derive(Parser, Debug)]
#[command(name = "sdtp", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate text from a prompt, with or without pruning the prefill.
    Generate(generate::GenerateArgs),
    /// Benchmark the unpruned baseline against SDTP schedules (llama-bench style).
    Profile(profile::ProfileArgs),
    /// Does pruning keep the answers? Agreement, perplexity, passkey, RULER and the speed–fidelity
    /// sweep, baseline against schedules.
    Eval(eval::EvalArgs),
    /// Gradient × hidden saliency labels of the frozen model on a corpus, for training a
    /// predictor (a sharded, resumable safetensors dataset).
    Saliency(train::SaliencyArgs),
    /// Train the SDTP saliency predictor (per-stage MLPs) on a `sdtp saliency` dataset.
    TrainPredictor(train::TrainPredictorArgs),
}

/// Which model to run and where.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// A .gguf file, a HF-layout folder, a hub id (org/name) from the local hf-hub cache, or
    /// synthetic:<preset> (llama2-7b, llama3-8b, mistral-7b, qwen2-7b, smollm2-135m, tiny;
    /// random weights for speed measurement, meaningless text). Default: SmolLM2-135M-Instruct
    /// as fetched by scripts/fetch_model.sh.
    #[arg(long)]
    pub model: Option<String>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// auto (bf16 on CUDA, f32 on CPU), f32, f16 or bf16.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Seed for sampling, the random scorer and synthetic weights.
    #[arg(long, default_value_t = 299_792_458)]
    pub seed: u64,
    /// auto, quantized or dequantized. auto: GGUF matrices stay in their block types
    /// (q4_1, q5_0 and q5_1 run as q8_0 on the CPU, whose kernels for them are scalar);
    /// safetensors and synthetic models without --quant are dense.
    #[arg(long, default_value = "auto")]
    pub weights: String,
    /// q4_0, q8_0 or q4_k: random quantized weights of that block type for a synthetic:
    /// model (speed and memory of a quantized 7–8B model without its file).
    #[arg(long)]
    pub quant: Option<String>,
}

/// How the prefill is pruned and where its per-layer log goes.
#[derive(Args, Debug, Clone)]
pub struct PruneArgs {
    /// A preset (none, keep09, keep08, keep07, paper) or a schedule TOML file.
    #[arg(long, default_value = "none")]
    pub schedule: String,
    /// Override the schedule's scorer: learned, attention, norm or random.
    #[arg(long)]
    pub scorer: Option<String>,
    /// Per-layer JSONL log of every prefill.
    #[arg(long, default_value = "debug/prune_log.jsonl")]
    pub prune_log: std::path::PathBuf,
    /// Write no prune log.
    #[arg(long)]
    pub no_prune_log: bool,
}

/// A `--json` report to draw as SVG (`sdtp profile plot`, `sdtp eval plot`; each names its
/// report in the help of `--input`).
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A report written by `--json`.
    #[arg(long)]
    pub input: std::path::PathBuf,
    /// The SVG to write (default: the input with .svg).
    #[arg(long)]
    pub output: Option<std::path::PathBuf>,
}

impl PlotArgs {
    /// The SVG path: `--output`, else the input with `.svg`.
    pub fn svg_path(&self) -> std::path::PathBuf {
        self.output
            .clone()
            .unwrap_or_else(|| self.input.with_extension("svg"))
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Generate(args) => generate::run(args),
        Command::Profile(args) => profile::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Saliency(args) => train::run_saliency(args),
        Command::TrainPredictor(args) => train::run_train_predictor(args),
    }
}

/// A progress bar on stderr counting `len` `unit`s, hidden when `quiet` or when stderr is not
/// a terminal (logs and CI output stay clean).
pub fn progress_bar(quiet: bool, len: usize, unit: &str) -> anyhow::Result<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return Ok(indicatif::ProgressBar::hidden());
    }
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{bar:30.cyan/blue}} {{pos}}/{{len}} {unit} · {{elapsed_precise}} (eta {{eta}}) · {{msg}}"
    ))
    .map_err(|e| anyhow::anyhow!("progress bar template: {e}"))?;
    Ok(indicatif::ProgressBar::new(len as u64).with_style(style))
}
