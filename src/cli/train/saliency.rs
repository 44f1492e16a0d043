//! `sdtp saliency`: flags, corpus, schedule and context checked before the weights load, then
//! the labelling run of `sdtp::train::labelling` with a progress bar.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;

use super::resolve_stages;
use crate::cli::progress_bar;
use crate::cli::{ModelArgs, Session};
use sdtp::device::device_name;
use sdtp::model::load::{read_config, ModelSource};
use sdtp::prune::select::mandatory_tail_len;
use sdtp::train::corpus::load_corpus;
use sdtp::train::labelling::{
    create_dataset, label_missing_shards, plan_dataset, LabelEvent, LabelSettings, TokenizedCorpus,
};
use sdtp::train::saliency::LossSpan;

/// The corpus shipped with the repository (Project Gutenberg #103, public domain).

#[derive(Args, Debug)]
pub struct SaliencyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL corpus ({"id", "text"} per line) or a plain-text file (one document).
    #[arg(long, default_value = sdtp::corpus::SHIPPED_TEXT_PATH)]
    pub corpus: PathBuf,
    /// Dataset folder to create, or to resume when it was made with the same arguments.
    #[arg(long)]
    pub out: PathBuf,
    /// Whose stages to label: a preset (keep09, keep08, keep07, paper) or a TOML schedule.
    #[arg(long, default_value = "keep09")]
    pub schedule: String,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 512)]
    pub seq_len: usize,
    /// Tokens between the starts of consecutive windows of a document (default: seq-len,
    /// no overlap).
    #[arg(long)]
    pub stride: Option<usize>,
    /// Hold out every Nth document (the 5th, 10th, …) for evaluation; 0 holds none out.
    #[arg(long, default_value_t = 5)]
    pub heldout_every: usize,
    /// The loss whose gradient labels the tokens: `tail` (default) averages the next-token
    /// cross entropy of the last ⌈min_tail_ratio · seq-len⌉ positions, the ones the schedule
    /// never prunes, so π̂ measures each other token's value as context for the end of the
    /// sequence; `all` averages every position (then a token's own prediction dominates its
    /// π̂). See docs/training.md.
    #[arg(long, value_enum, default_value = "tail")]
    pub loss: LossArg,
    /// Label at most this many windows (taken evenly over the documents).
    #[arg(long)]
    pub max_sequences: Option<usize>,
    /// Sequences per shard file.
    #[arg(long, default_value_t = 16)]
    pub sequences_per_shard: usize,
    /// f16 (default, half the disk) or f32 for the stored hidden states.
    #[arg(long, default_value = "f16")]
    pub hidden_dtype: String,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossArg {
    Tail,
    All,
}

pub fn run_saliency(args: SaliencyArgs) -> Result<()> {
    let started = Instant::now();
    if args.seq_len < 2 {
        bail!(
            "--seq-len {} is too short: the loss needs at least 2 tokens",
            args.seq_len
        );
    }
    if args.sequences_per_shard == 0 {
        bail!("--sequences-per-shard must be at least 1");
    }
    if !["f16", "f32"].contains(&args.hidden_dtype.as_str()) {
        bail!("--hidden-dtype {} is not f16 or f32", args.hidden_dtype);
    }
    let corpus = load_corpus(&args.corpus)?;
    let source = ModelSource::resolve(args.model.model.as_deref())?;
    let config = read_config(&source)?;
    let schedule = resolve_stages(&args.schedule, config.num_hidden_layers)?;
    if args.seq_len > config.max_position_embeddings {
        bail!(
            "--seq-len {} is longer than the model's context of {} tokens",
            args.seq_len,
            config.max_position_embeddings
        );
    }
    // Saliency differentiates through every matrix; candle's quantized matmul has no backward.
    let mut model_args = args.model.clone();
    model_args.weights = match model_args.weights.to_ascii_lowercase().as_str() {
        "auto" | "dequantized" => "dequantized".to_string(),
        other => bail!(
            "sdtp saliency needs gradients through the weights, which quantized matrices do not give; drop --weights {other} (it loads dequantized)"
        ),
    };
    let (session, _) = Session::open(&model_args, &[])?;
    let loaded = &session.loaded;
    let docs = TokenizedCorpus::encode(&corpus, |text| loaded.codec.encode(text))?;
    let span = match args.loss {
        LossArg::All => LossSpan::All,
        LossArg::Tail => {
            LossSpan::Last(mandatory_tail_len(args.seq_len, schedule.min_tail_ratio).max(1))
        }
    };
    let settings = LabelSettings {
        corpus_path: &args.corpus,
        seq_len: args.seq_len,
        stride: args.stride.unwrap_or(args.seq_len),
        heldout_every: args.heldout_every,
        loss: span,
        max_sequences: args.max_sequences,
        sequences_per_shard: args.sequences_per_shard,
        hidden_dtype: args.hidden_dtype.clone(),
    };
    let plan = plan_dataset(
        &corpus,
        &docs,
        &settings,
        &schedule,
        &config,
        session.model_name(),
    )?;
    let manifest = create_dataset(
        &args.out,
        plan,
        device_name(loaded.model.device()),
        format!("{:?}", session.dtype).to_lowercase(),
    )?;
    let plan = &manifest.plan;
    let bar = progress_bar(false, plan.windows.len(), "sequences")?;
    let mut on_event = |event: LabelEvent| match event {
        LabelEvent::Skipped { sequences } => bar.inc(sequences as u64),
        LabelEvent::Labelled { loss } => {
            bar.set_message(format!("loss {loss:.3}"));
            bar.inc(1);
        }
    };
    let labelled_now =
        label_missing_shards(&loaded.model, &args.out, plan, &docs, span, &mut on_event)?;
    bar.finish_and_clear();
    println!(
        "saliency dataset {}: {} sequences ({} newly labelled) of {} tokens, layers {:?}, model {}, in {:.1} s",
        args.out.display(),
        plan.windows.len(),
        labelled_now,
        plan.seq_len,
        plan.layers,
        plan.model,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
