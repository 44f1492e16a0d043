//! `sdtp saliency` and `sdtp train-predictor`: the wiring from arguments to `sdtp::train`.
//! Bad input (corpus, dataset, schedule) is refused before the model's weights load.
//! `saliency` has its own module.

mod saliency;

pub use saliency::{run_saliency, SaliencyArgs};

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::ProgressBar;

use super::{progress_bar, ModelArgs, Session};
use sdtp::device::{device_name, open_device, DeviceRequest};
use sdtp::model::load::{read_config, ModelSource};
use sdtp::prune::schedule::{PruneSchedule, ScorerKind};
use sdtp::prune::scorer::{model_fingerprint, PredictorInputs};
use sdtp::report::{git_commit, rfc3339};
use sdtp::train::corpus::Split;
use sdtp::train::dataset::Dataset;
use sdtp::train::evaluate::{agreement, compare_scorers, heldout_prompts};
use sdtp::train::predictor::{train, PredictorShape, SaliencyTarget, TrainConfig, TrainEvent};
use sdtp::train::predictor_file::{check_existing_predictor, save_trained_predictor};
use sdtp::train::report::{
    agreement_table, comparison_table, epoch_summary, AgreementReport, ReportConfig, TrainReport,
};
use sdtp::train::training_set::{dataset_corpus, TrainingSet};

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
    /// What the predictor reads of a token: `hidden+attention` (its hidden state and how much
    /// each head's window of the prompt's last queries, the question, looks at it) or
    /// `hidden` (its hidden state alone, SDTP's predictor).
    #[arg(long, default_value = "hidden+attention")]
    pub inputs: String,
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

pub fn run_train_predictor(args: TrainPredictorArgs) -> Result<()> {
    let agreement_kinds = args
        .agreement_scorers
        .iter()
        .map(|s| s.parse::<ScorerKind>())
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = PredictorInputs::parse(&args.inputs).context("--inputs")?;
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
    // The MLPs train where --device says (the dataset's stages load onto it).
    let device = open_device(args.model.device.parse::<DeviceRequest>()?)?;
    let set = TrainingSet::load(&dataset, &layers, args.target, &device)?;
    let (train_set, heldout_set) = (set.split(Split::Train), set.split(Split::Heldout));
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
        check_existing_predictor(&args.out, &config, &schedule, args.target)?;
        (Vec::new(), Vec::new())
    } else {
        let mut bar = ProgressBar::hidden();
        let mut on_event = |event: TrainEvent| match event {
            TrainEvent::EpochStart { epoch, steps } => {
                bar = progress_bar(false, steps, "steps").unwrap_or_else(|_| ProgressBar::hidden());
                bar.set_message(format!("epoch {epoch}"));
            }
            TrainEvent::Step { loss } => {
                bar.set_message(format!("loss {loss:.4}"));
                bar.inc(1);
            }
            TrainEvent::EpochEnd(log) => {
                bar.finish_and_clear();
                tracing::info!("{}", epoch_summary(log));
            }
        };
        let trained = train(
            &train_set,
            &heldout_set,
            &layers,
            PredictorShape {
                inputs,
                hidden_size: plan.hidden_size,
                heads: plan.attention_heads,
            },
            &train_config,
            &device,
            &mut on_event,
        )?;
        save_trained_predictor(
            &args.out,
            &trained,
            args.target,
            &config,
            &fingerprint,
            &schedule,
            &dataset,
        )?;
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
    print!(
        "{}",
        comparison_table(
            &comparison,
            &layers,
            heldout_set.len(),
            plan.row_len,
            args.target
        )
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
        config: ReportConfig::from(&train_config),
        best_epoch,
        history,
        comparison,
        agreement: agreement_report,
        train_seconds,
        date: rfc3339(SystemTime::now()),
        git_commit: git_commit().to_string(),
    };
    // An evaluation does not overwrite the training report.
    let report_path = args.out.with_extension(if args.evaluate_only {
        "eval.json"
    } else {
        "json"
    });
    report.write(&report_path)?;
    tracing::info!("report: {}", report_path.display());
    Ok(())
}

fn run_agreement(
    args: &TrainPredictorArgs,
    dataset: &Dataset,
    schedule: &PruneSchedule,
    kinds: &[ScorerKind],
) -> Result<AgreementReport> {
    let started = Instant::now();
    let plan = &dataset.manifest.plan;
    let corpus = dataset_corpus(args.corpus.as_deref(), dataset)?;
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
    let bar = progress_bar(false, prompts.len(), "prompts")?;
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
    print!(
        "{}",
        agreement_table(
            &schedule.name,
            prompts.len(),
            args.agreement_tokens,
            &results
        )
    );
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
