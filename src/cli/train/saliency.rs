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
use sdtp::eval::ruler::haystack::Corpus as RulerCorpus;
use sdtp::eval::ruler::sample::build_samples;
use sdtp::eval::ruler::task::Task;
use sdtp::eval::tokenize::{prompt_wrapper, PromptFormat};
use sdtp::model::load::{codec_before_load, read_config, ModelSource};
use sdtp::model::text::TextCodec;
use sdtp::prune::select::mandatory_tail_len;
use sdtp::train::corpus::load_corpus;
use sdtp::train::dataset::RulerPlan;
use sdtp::train::labelling::{
    create_dataset, label_missing_shards, plan_dataset, AnsweredPrompt, AnsweredPrompts,
    LabelEvent, LabelSettings, TokenizedCorpus,
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
    /// Also label RULER-style samples of these tasks (comma-separated names, as `sdtp eval
    /// ruler --tasks`): each is its prompt followed by its answer, and π̂ comes from the loss
    /// of the answer tokens. Leave families out here to report on them as held out.
    #[arg(long, value_delimiter = ',')]
    pub ruler_tasks: Vec<String>,
    /// RULER-style samples per task (every --heldout-every-th is held out).
    #[arg(long, default_value_t = 20)]
    pub ruler_samples: usize,
    /// Target prompt lengths of the RULER-style samples, tokens, comma-separated (default:
    /// --seq-len); --ruler-samples per task at each.
    #[arg(long, value_delimiter = ',')]
    pub ruler_length: Vec<usize>,
    /// Seed of the RULER-style samples; use one that no report runs on.
    #[arg(long, default_value_t = 101)]
    pub ruler_seed: u64,
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
    let ruler_tasks = args
        .ruler_tasks
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::parse::<Task>)
        .collect::<Result<Vec<_>>>()?;
    if !ruler_tasks.is_empty() && args.ruler_samples == 0 {
        bail!("--ruler-samples 0 with --ruler-tasks: label at least one sample per task");
    }
    let ruler_lengths = match args.ruler_length.as_slice() {
        [] => vec![args.seq_len],
        given => given.to_vec(),
    };
    if ruler_lengths.contains(&0) {
        bail!("--ruler-length must name lengths of at least 1 token");
    }
    let corpus = load_corpus(&args.corpus)?;
    let source = ModelSource::resolve(args.model.model.as_deref())?;
    let config = read_config(&source)?;
    let schedule = resolve_stages(&args.schedule, config.num_hidden_layers)?;
    if !ruler_tasks.is_empty() {
        let longest = ruler_tasks
            .iter()
            .map(|t| t.new_tokens())
            .max()
            .unwrap_or(0);
        let ruler_length = ruler_lengths.iter().copied().max().unwrap_or(0);
        if ruler_length + longest > config.max_position_embeddings {
            bail!(
                "--ruler-length {ruler_length} with answers of up to {longest} tokens is over the model's context of {} tokens",
                config.max_position_embeddings
            );
        }
    }
    if args.seq_len > config.max_position_embeddings {
        bail!(
            "--seq-len {} is longer than the model's context of {} tokens",
            args.seq_len,
            config.max_position_embeddings
        );
    }
    // The samples are built once before the weights load, so a length too short for a task
    // fails first (they are built again, in the chat template, after the load).
    answered_prompts(
        &ruler_tasks,
        &ruler_lengths,
        args.ruler_samples,
        args.ruler_seed,
        &codec_before_load(&source)?,
        &|t| Ok(t.to_string()),
    )?;
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
    let (wrap, _) = prompt_wrapper(loaded, PromptFormat::Chat);
    let answered = answered_prompts(
        &ruler_tasks,
        &ruler_lengths,
        args.ruler_samples,
        args.ruler_seed,
        &loaded.codec,
        wrap.as_ref(),
    )?;
    let ruler = (!ruler_tasks.is_empty()).then(|| AnsweredPrompts {
        plan: RulerPlan {
            tasks: ruler_tasks.iter().map(|t| t.name().to_string()).collect(),
            lengths: ruler_lengths.clone(),
            samples: args.ruler_samples,
            seed: args.ruler_seed,
            chat: loaded.chat_template.is_some(),
        },
        prompts: &answered,
    });
    let plan = plan_dataset(
        &corpus,
        &docs,
        &settings,
        ruler.as_ref(),
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
    let labelled_now = label_missing_shards(
        &loaded.model,
        &args.out,
        plan,
        &docs,
        &answered,
        span,
        &mut on_event,
    )?;
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

/// RULER-style samples of `tasks` built as `sdtp eval ruler` builds them (the model's chat
/// template when it has one), each with its answer: the references joined as RULER's
/// outputs list them.
fn answered_prompts(
    tasks: &[Task],
    lengths: &[usize],
    samples: usize,
    seed: u64,
    codec: &TextCodec,
    wrap: &dyn Fn(&str) -> Result<String>,
) -> Result<Vec<AnsweredPrompt>> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let corpus = RulerCorpus::shipped()?;
    let built = build_samples(
        tasks,
        lengths,
        samples,
        seed,
        &corpus,
        &|t| codec.encode(t),
        wrap,
    )
    .map_err(|e| anyhow::anyhow!("--ruler-length: {e}"))?;
    built
        .into_iter()
        .map(|s| {
            let answer = codec.encode(&format!(" {}", s.references.join(", ")))?;
            Ok(AnsweredPrompt {
                id: format!("ruler:{}:{}:{}", s.id.task, s.id.length, s.id.index),
                prompt: s.ids,
                answer,
            })
        })
        .collect()
}
