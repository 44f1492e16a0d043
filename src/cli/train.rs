//! `sdtp saliency` and `sdtp train-predictor`: the wiring from arguments to `crate::train`.
//! Bad input (corpus, dataset, schedule) is refused before the model's weights load.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use candle_core::Device;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::{ModelArgs, Session};
use crate::device::device_name;
use crate::model::load::{read_config, ModelSource};
use crate::prune::schedule::{PruneSchedule, ScorerKind};
use crate::prune::scorer::{
    model_fingerprint, LearnedScorer, PREDICTOR_LAYERS_KEY, PREDICTOR_MODEL_KEY,
};
use crate::prune::select::mandatory_tail_len;
use crate::train::corpus::{load_corpus, plan_windows, split_of, Split};
use crate::train::dataset::{
    create_or_resume, shard_is_complete, write_shard, CorpusInfo, Dataset, DatasetPlan,
    LabelledSequence, Manifest, FORMAT,
};
use crate::train::evaluate::{
    agreement, compare_scorers, heldout_prompts, AgreementStats, ScorerStageStats,
};
use crate::train::predictor::{
    save_predictor, train, EpochLog, SaliencyTarget, TrainConfig, TrainEvent,
};
use crate::train::saliency::{sequence_saliency, LossSpan};
use crate::train::st::read_metadata;
use crate::train::{git_commit, PREDICTOR_CORPUS_KEY, PREDICTOR_DATE_KEY, PREDICTOR_SCHEDULE_KEY};

/// The corpus shipped with the repository (Project Gutenberg #103, public domain).
const DEFAULT_CORPUS: &str = "data/text/eighty_days.jsonl";

#[derive(Args, Debug)]
pub struct SaliencyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// JSONL corpus ({"id", "text"} per line) or a plain-text file (one document).
    #[arg(long, default_value = DEFAULT_CORPUS)]
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

#[derive(Args, Debug)]
pub struct TrainPredictorArgs {
    /// The model the dataset was made with (checked against its fingerprint); its weights
    /// load only for --agreement.
    #[command(flatten)]
    pub model: ModelArgs,
    /// A dataset folder written by `sdtp saliency`.
    #[arg(long)]
    pub dataset: PathBuf,
    /// Predictor file to write (safetensors). A schedule TOML that uses it is written next
    /// to it (same name, .toml), and the training report (.json).
    #[arg(long)]
    pub out: PathBuf,
    /// The schedule the predictor serves: a preset or a TOML file; its layers must be in
    /// the dataset.
    #[arg(long, default_value = "keep09")]
    pub schedule: String,
    #[arg(long, default_value_t = 40)]
    pub epochs: usize,
    /// Sequences per optimiser step.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Ranking pairs sampled per sequence and stage at each step.
    #[arg(long, default_value_t = 2048)]
    pub pairs: usize,
    #[arg(long, default_value_t = 1.0)]
    pub mse_weight: f64,
    #[arg(long, default_value_t = 1.0)]
    pub rank_weight: f64,
    /// What to learn to rank, from the stored π̂ = Σ_d ∂L/∂h ⊙ h: signed (π̂ itself),
    /// negated (−π̂: removing the token would raise the loss) or abs (|π̂|). The held-out
    /// comparison measures every scorer against the same target.
    #[arg(long, value_enum, default_value = "abs")]
    pub target: SaliencyTarget,
    /// Stop after this many epochs without a better mean held-out Spearman.
    #[arg(long, default_value_t = 6)]
    pub patience: usize,
    /// Skip training: evaluate the predictor already at --out (report: <out>.eval.json).
    #[arg(long)]
    pub evaluate_only: bool,
    /// After training, compare pruned with unpruned prefill on this many held-out prompts
    /// (learned, attention, norm, random); loads the model's weights.
    #[arg(long, default_value_t = 0)]
    pub agreement: usize,
    /// Scorers compared in the agreement run (comma list).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "learned,attention,norm,random"
    )]
    pub agreement_scorers: Vec<String>,
    /// Tokens per agreement prompt.
    #[arg(long, default_value_t = 1024)]
    pub agreement_tokens: usize,
    /// The corpus for the agreement prompts (default: the dataset's, by its recorded path).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
}

fn progress_bar(len: usize, unit: &str) -> Result<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return Ok(ProgressBar::hidden());
    }
    let style = ProgressStyle::with_template(&format!(
        "{{bar:30.cyan/blue}} {{pos}}/{{len}} {unit} · {{elapsed_precise}} (eta {{eta}}) · {{msg}}"
    ))
    .context("progress bar template")?;
    Ok(ProgressBar::new(len as u64).with_style(style))
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// Resolves `--schedule` against the model's config without loading weights; a schedule
/// without stages has nothing to label or train.
fn resolve_stages(schedule: &str, num_layers: usize) -> Result<PruneSchedule> {
    let resolution = PruneSchedule::resolve(schedule, num_layers)?;
    if let Some(note) = &resolution.mapping {
        tracing::info!("{note}");
    }
    if resolution.schedule.stages.is_empty() {
        bail!("schedule {schedule} has no pruning stage; use one with stages, e.g. keep09");
    }
    Ok(resolution.schedule)
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
    let model = &loaded.model;

    let doc_ids: Vec<String> = corpus.documents.iter().map(|d| d.id.clone()).collect();
    let doc_tokens = corpus
        .documents
        .iter()
        .map(|d| loaded.codec.encode(&d.text))
        .collect::<Result<Vec<_>>>()?;
    let lens: Vec<usize> = doc_tokens.iter().map(Vec::len).collect();
    let stride = args.stride.unwrap_or(args.seq_len);
    let span = match args.loss {
        LossArg::All => LossSpan::All,
        LossArg::Tail => {
            LossSpan::Last(mandatory_tail_len(args.seq_len, schedule.min_tail_ratio).max(1))
        }
    };
    let mut windows = plan_windows(&doc_ids, &lens, args.seq_len, stride, args.heldout_every);
    if windows.is_empty() {
        bail!(
            "corpus {} has no document of {} tokens (the longest has {}); use a shorter --seq-len",
            args.corpus.display(),
            args.seq_len,
            lens.iter().max().copied().unwrap_or(0)
        );
    }
    if let Some(max) = args.max_sequences {
        windows.truncate(max);
    }
    let (train_docs, heldout_docs): (Vec<_>, Vec<_>) = doc_ids
        .iter()
        .enumerate()
        .partition(|(i, _)| split_of(*i, args.heldout_every) == Split::Train);
    let plan = DatasetPlan {
        format: FORMAT.to_string(),
        model: model_fingerprint(&config),
        model_name: session.model_name(),
        hidden_size: config.hidden_size,
        layers: schedule.stages.iter().map(|s| s.layer).collect(),
        schedule: schedule.name.clone(),
        keep_ratios: schedule.stages.iter().map(|s| s.keep_ratio).collect(),
        min_head_tokens: schedule.min_head_tokens,
        min_tail_ratio: schedule.min_tail_ratio,
        seq_len: args.seq_len,
        stride,
        loss: span.describe(),
        hidden_dtype: args.hidden_dtype.clone(),
        corpus: CorpusInfo {
            path: args.corpus.display().to_string(),
            digest: corpus.digest.clone(),
            documents: corpus.documents.len(),
            heldout_every: args.heldout_every,
            train_documents: train_docs.into_iter().map(|(_, d)| d.clone()).collect(),
            heldout_documents: heldout_docs.into_iter().map(|(_, d)| d.clone()).collect(),
        },
        sequences_per_shard: args.sequences_per_shard,
        windows,
    };
    let manifest = create_or_resume(
        &args.out,
        Manifest {
            plan,
            created: now(),
            sdtp_version: env!("CARGO_PKG_VERSION").to_string(),
            device: device_name(model.device()),
            dtype: format!("{:?}", session.dtype).to_lowercase(),
        },
    )?;
    let plan = &manifest.plan;
    let heldout = plan
        .windows
        .iter()
        .filter(|w| w.split == Split::Heldout)
        .count();
    tracing::info!(
        "{} sequences of {} tokens ({} train, {heldout} held-out) at layers {:?}, {} shards in {}",
        plan.windows.len(),
        plan.seq_len,
        plan.windows.len() - heldout,
        plan.layers,
        plan.num_shards(),
        args.out.display()
    );
    let tail_queries = mandatory_tail_len(plan.seq_len, plan.min_tail_ratio);
    let bar = progress_bar(plan.windows.len(), "sequences")?;
    let mut labelled_now = 0usize;
    for index in 0..plan.num_shards() {
        let range = plan.shard_windows(index);
        if shard_is_complete(&args.out, plan, index) {
            bar.inc(range.len() as u64);
            tracing::debug!("shard {index} already done");
            continue;
        }
        let shard_started = Instant::now();
        let mut sequences = Vec::with_capacity(range.len());
        for window in range.clone() {
            let w = &plan.windows[window];
            let doc = doc_ids
                .iter()
                .position(|d| *d == w.doc)
                .with_context(|| format!("document {} is not in the corpus", w.doc))?;
            let tokens = doc_tokens[doc][w.start..w.start + plan.seq_len].to_vec();
            let labels = sequence_saliency(model, &tokens, span, &plan.layers, tail_queries)
                .with_context(|| format!("window {window} ({} @ {})", w.doc, w.start))?;
            bar.set_message(format!("loss {:.3}", labels.loss));
            bar.inc(1);
            sequences.push(LabelledSequence {
                window,
                tokens,
                labels,
            });
            labelled_now += 1;
        }
        write_shard(&args.out, plan, index, &sequences)?;
        let secs = shard_started.elapsed().as_secs_f64();
        tracing::info!(
            "shard {}/{}: {} sequences in {secs:.1} s ({:.2} s/sequence)",
            index + 1,
            plan.num_shards(),
            range.len(),
            secs / range.len().max(1) as f64
        );
    }
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

/// Everything `train-predictor` measured, written next to the predictor.
#[derive(Serialize)]
struct TrainReport {
    model: String,
    model_name: String,
    schedule: String,
    layers: Vec<usize>,
    dataset: String,
    corpus: CorpusInfo,
    train_sequences: usize,
    heldout_sequences: usize,
    seq_len: usize,
    /// What "true saliency" means in `comparison` and what the predictor learned.
    target: SaliencyTarget,
    config: ReportConfig,
    best_epoch: Vec<usize>,
    history: Vec<EpochLog>,
    comparison: Vec<ScorerStageStats>,
    agreement: Option<AgreementReport>,
    train_seconds: f64,
    date: String,
    git_commit: String,
}

#[derive(Serialize)]
struct ReportConfig {
    epochs: usize,
    batch_size: usize,
    lr: f64,
    weight_decay: f64,
    pairs: usize,
    mse_weight: f64,
    rank_weight: f64,
    patience: usize,
    seed: u64,
}

#[derive(Serialize)]
struct AgreementReport {
    prompts: usize,
    tokens: usize,
    prompt_ids: Vec<String>,
    device: String,
    dtype: String,
    results: Vec<AgreementStats>,
    seconds: f64,
}

fn with_extension(path: &Path, ext: &str) -> PathBuf {
    path.with_extension(ext)
}

pub fn run_train_predictor(args: TrainPredictorArgs) -> Result<()> {
    let agreement_kinds = args
        .agreement_scorers
        .iter()
        .map(|s| s.parse::<ScorerKind>())
        .collect::<Result<Vec<_>, _>>()?;
    let dataset = Dataset::open(&args.dataset)?;
    let source = ModelSource::resolve(args.model.model.as_deref())?;
    let config = read_config(&source)?;
    let fingerprint = model_fingerprint(&config);
    dataset.check_model(&fingerprint, &source.display_name())?;
    let schedule = resolve_stages(&args.schedule, config.num_hidden_layers)?;
    let layers: Vec<usize> = schedule.stages.iter().map(|s| s.layer).collect();
    dataset.check_layers(&schedule.name, &layers)?;
    if args.evaluate_only && !args.out.is_file() {
        bail!(
            "--evaluate-only: no predictor at {}; train one first (drop --evaluate-only)",
            args.out.display()
        );
    }
    let plan = &dataset.manifest.plan;
    if !dataset.is_complete() {
        tracing::warn!(
            "dataset {} has {} of {} shards; using those (rerun `sdtp saliency` with the same arguments to finish it)",
            args.dataset.display(),
            dataset.complete_shards.len(),
            plan.num_shards()
        );
    }
    let device = Device::Cpu;
    let mut sequences = dataset.load(&layers, &device)?;
    for stage in sequences.iter_mut().flat_map(|s| s.stages.iter_mut()) {
        stage.saliency = args.target.apply(&stage.saliency);
    }
    let train_set: Vec<_> = sequences
        .iter()
        .filter(|s| s.split == Split::Train)
        .collect();
    let heldout_set: Vec<_> = sequences
        .iter()
        .filter(|s| s.split == Split::Heldout)
        .collect();
    tracing::info!(
        "dataset {}: {} train and {} held-out sequences of {} tokens, stages {layers:?}",
        args.dataset.display(),
        train_set.len(),
        heldout_set.len(),
        plan.seq_len
    );
    let train_config = TrainConfig {
        max_epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        weight_decay: args.weight_decay,
        pairs_per_sequence: args.pairs,
        mse_weight: args.mse_weight,
        rank_weight: args.rank_weight,
        patience: args.patience,
        seed: args.model.seed,
    };

    let train_started = Instant::now();
    let (best_epoch, history) = if args.evaluate_only {
        LearnedScorer::check_file(&args.out, &config, &schedule)?;
        let trained_on = read_metadata(&args.out)?.get("sdtp.target").cloned();
        if let Some(t) = trained_on.filter(|t| t != args.target.as_str()) {
            bail!(
                "predictor {} was trained on the {t} target, not {}; pass --target {t}",
                args.out.display(),
                args.target.as_str()
            );
        }
        (Vec::new(), Vec::new())
    } else {
        let mut bar = ProgressBar::hidden();
        let mut on_event = |event: TrainEvent| match event {
            TrainEvent::EpochStart { epoch, steps } => {
                bar = progress_bar(steps, "steps").unwrap_or_else(|_| ProgressBar::hidden());
                bar.set_message(format!("epoch {epoch}"));
            }
            TrainEvent::Step { loss } => {
                bar.set_message(format!("loss {loss:.4}"));
                bar.inc(1);
            }
            TrainEvent::EpochEnd(log) => {
                bar.finish_and_clear();
                tracing::info!(
                    "epoch {:>2}: train loss {:.4} (mse {:.4}, rank {:.4}) · held-out Spearman {:.4} [{}] · {:.1} s",
                    log.epoch,
                    log.train_loss,
                    log.train_mse,
                    log.train_rank,
                    log.heldout_spearman_mean,
                    log.heldout_spearman
                        .iter()
                        .map(|r| format!("{r:.3}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    log.seconds
                );
            }
        };
        let trained = train(
            &train_set,
            &heldout_set,
            &layers,
            plan.hidden_size,
            &train_config,
            &device,
            &mut on_event,
        )?;
        let mut metadata =
            predictor_metadata(&fingerprint, &schedule, &dataset, &trained.best_epoch);
        metadata.insert("sdtp.target".to_string(), args.target.as_str().to_string());
        save_predictor(&args.out, &trained.stages, metadata)?;
        write_schedule_toml(&args.out, &schedule)?;
        LearnedScorer::check_file(&args.out, &config, &schedule)
            .context("the predictor just written does not load")?;
        tracing::info!(
            "wrote {} (best epochs per stage {:?})",
            args.out.display(),
            trained.best_epoch
        );
        (trained.best_epoch, trained.history)
    };
    let train_seconds = train_started.elapsed().as_secs_f64();

    let comparison = compare_scorers(
        &config,
        &schedule,
        &ScorerKind::ALL,
        Some(&args.out),
        &heldout_set,
        args.model.seed,
    )?;
    print_comparison(
        &comparison,
        &layers,
        heldout_set.len(),
        plan.seq_len,
        args.target,
    );

    let agreement_report = if args.agreement > 0 {
        Some(run_agreement(&args, &dataset, &schedule, &agreement_kinds)?)
    } else {
        None
    };

    let report = TrainReport {
        model: fingerprint,
        model_name: source.display_name(),
        schedule: schedule.name.clone(),
        layers,
        dataset: args.dataset.display().to_string(),
        corpus: plan.corpus.clone(),
        train_sequences: train_set.len(),
        heldout_sequences: heldout_set.len(),
        seq_len: plan.seq_len,
        target: args.target,
        config: ReportConfig {
            epochs: args.epochs,
            batch_size: args.batch_size,
            lr: args.lr,
            weight_decay: args.weight_decay,
            pairs: args.pairs,
            mse_weight: args.mse_weight,
            rank_weight: args.rank_weight,
            patience: args.patience,
            seed: args.model.seed,
        },
        best_epoch,
        history,
        comparison,
        agreement: agreement_report,
        train_seconds,
        date: now(),
        git_commit: git_commit().to_string(),
    };
    // An evaluation does not overwrite the training report.
    let report_path = with_extension(
        &args.out,
        if args.evaluate_only {
            "eval.json"
        } else {
            "json"
        },
    );
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", report_path.display()))?;
    tracing::info!("report: {}", report_path.display());
    Ok(())
}

fn predictor_metadata(
    fingerprint: &str,
    schedule: &PruneSchedule,
    dataset: &Dataset,
    best_epoch: &[usize],
) -> HashMap<String, String> {
    let plan = &dataset.manifest.plan;
    let stages = schedule
        .stages
        .iter()
        .map(|s| format!("{}:{}", s.layer, s.keep_ratio))
        .collect::<Vec<_>>()
        .join(",");
    let heldout = plan.corpus.heldout_documents.len();
    HashMap::from([
        (PREDICTOR_MODEL_KEY.to_string(), fingerprint.to_string()),
        (
            PREDICTOR_LAYERS_KEY.to_string(),
            schedule
                .stages
                .iter()
                .map(|s| s.layer.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        (
            PREDICTOR_SCHEDULE_KEY.to_string(),
            format!(
                "{} (layer:keep_ratio {stages}; min_head_tokens {}, min_tail_ratio {})",
                schedule.name, schedule.min_head_tokens, schedule.min_tail_ratio
            ),
        ),
        (
            PREDICTOR_CORPUS_KEY.to_string(),
            format!(
                "{} (fnv1a64 {}, {} documents, {heldout} held out: every {}th; {} windows of {} tokens; saliency loss over {} predictions)",
                plan.corpus.path,
                plan.corpus.digest,
                plan.corpus.documents,
                plan.corpus.heldout_every,
                plan.windows.len(),
                plan.seq_len,
                plan.loss
            ),
        ),
        (PREDICTOR_DATE_KEY.to_string(), now()),
        ("sdtp.dataset_model".to_string(), plan.model_name.clone()),
        (
            "sdtp.best_epochs".to_string(),
            best_epoch
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        ("sdtp.git_commit".to_string(), git_commit().to_string()),
        (
            "sdtp.architecture".to_string(),
            "hidden -> hidden/4 -> GELU(erf) -> 1, per stage".to_string(),
        ),
    ])
}

/// `<out>.toml`: the schedule with `scorer = "learned"` and the predictor by file name, so
/// `--schedule <out>.toml` uses it.
fn write_schedule_toml(out: &Path, schedule: &PruneSchedule) -> Result<()> {
    let mut s = schedule.clone();
    s.name = out.file_stem().map_or_else(
        || schedule.name.clone(),
        |n| n.to_string_lossy().into_owned(),
    );
    s.scorer = Some(ScorerKind::Learned);
    s.predictor = out.file_name().map(PathBuf::from);
    let text = format!(
        "# {} with the learned SDTP predictor trained by `sdtp train-predictor` (docs/training.md).\n{}",
        schedule.name,
        toml::to_string(&s)?
    );
    let path = with_extension(out, "toml");
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn print_comparison(
    stats: &[ScorerStageStats],
    layers: &[usize],
    sequences: usize,
    len: usize,
    target: SaliencyTarget,
) {
    let kinds: Vec<&str> = ScorerKind::ALL.iter().map(|k| k.as_str()).collect();
    println!(
        "\nheld-out scorers vs the {} target ({sequences} sequences of {len} tokens, unpruned model, per stage)",
        target.as_str()
    );
    type Metric = fn(&ScorerStageStats) -> f64;
    let metrics: [(&str, Metric); 3] = [
        ("Spearman ρ", |s| s.spearman_mean),
        ("top-k overlap, k = kept", |s| s.top_k_overlap),
        ("pruned-set overlap", |s| s.pruned_overlap),
    ];
    for (title, metric) in metrics {
        println!("\n| {title} | k / n | {} |", kinds.join(" | "));
        println!("| --- | ---: |{}", " ---: |".repeat(kinds.len()));
        let mut means = vec![0.0; kinds.len()];
        for &layer in layers {
            let row: Vec<&ScorerStageStats> = kinds
                .iter()
                .filter_map(|k| stats.iter().find(|s| s.scorer == *k && s.layer == layer))
                .collect();
            let (k, n) = row.first().map_or((0, 0), |s| (s.k, s.tokens));
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    means[i] += metric(s) / layers.len() as f64;
                    format!("{:.3}", metric(s))
                })
                .collect();
            println!("| layer {layer} | {k} / {n} | {} |", cells.join(" | "));
        }
        let cells: Vec<String> = means.iter().map(|m| format!("**{m:.3}**")).collect();
        println!("| mean | | {} |", cells.join(" | "));
    }
}

fn run_agreement(
    args: &TrainPredictorArgs,
    dataset: &Dataset,
    schedule: &PruneSchedule,
    kinds: &[ScorerKind],
) -> Result<AgreementReport> {
    let started = Instant::now();
    let plan = &dataset.manifest.plan;
    let corpus_path = args
        .corpus
        .clone()
        .unwrap_or_else(|| PathBuf::from(&plan.corpus.path));
    let corpus = load_corpus(&corpus_path)?;
    if corpus.digest != plan.corpus.digest {
        bail!(
            "corpus {} differs from the one dataset {} was made from (fnv1a64 {} vs {}); pass the original with --corpus",
            corpus_path.display(),
            args.dataset.display(),
            corpus.digest,
            plan.corpus.digest
        );
    }
    let (session, _) = Session::open(&args.model, &[])?;
    let loaded = &session.loaded;
    let prompts = heldout_prompts(
        &loaded.codec,
        &corpus.documents,
        plan.corpus.heldout_every,
        args.agreement,
        args.agreement_tokens,
    )?;
    tracing::info!(
        "agreement: {} held-out prompts of {} tokens, schedule {}, scorers {}",
        prompts.len(),
        args.agreement_tokens,
        schedule.name,
        args.agreement_scorers.join(", ")
    );
    let bar = progress_bar(prompts.len(), "prompts")?;
    let mut progress = |i: usize| {
        bar.set_position(i as u64);
        if i.is_multiple_of(10) {
            tracing::info!("agreement: prompt {}/{}", i + 1, prompts.len());
        }
    };
    let results = agreement(
        &loaded.model,
        &prompts,
        schedule,
        kinds,
        Some(&args.out),
        session.seed,
        &mut progress,
    )?;
    bar.finish_and_clear();
    println!(
        "\nagreement with the unpruned prefill: schedule {}, {} held-out prompts of {} tokens",
        schedule.name,
        prompts.len(),
        args.agreement_tokens
    );
    println!("| scorer | first-token agreement | mean KL (nats) | median KL | max KL | tokens at last layer |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for r in &results {
        println!(
            "| {} | {:.3} | {:.4} | {:.4} | {:.4} | {:.1} |",
            r.scorer,
            r.first_token_agreement,
            r.kl_mean,
            r.kl_median,
            r.kl_max,
            r.final_tokens_mean
        );
    }
    Ok(AgreementReport {
        prompts: prompts.len(),
        tokens: args.agreement_tokens,
        prompt_ids: prompts.iter().map(|p| p.id.clone()).collect(),
        device: device_name(loaded.model.device()),
        dtype: format!("{:?}", session.dtype).to_lowercase(),
        results,
        seconds: started.elapsed().as_secs_f64(),
    })
}
