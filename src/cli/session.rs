//! Everything a command needs before its first token: model, device, schedule and scorer,
//! resolved in the order that makes bad input fail fast (config and schedule before the
//! weights load).

use std::time::SystemTime;

use anyhow::{Context, Result};
use candle_core::DType;

use super::{ModelArgs, PruneArgs};
use sdtp::device::{open_device, resolve_dtype, DTypeRequest, DeviceRequest};
use sdtp::eval::runs::EvalRun;
use sdtp::model::load::{
    load_model_with, read_config, resolve_weights, LoadOptions, LoadedModel, ModelSource,
};
use sdtp::model::quant::{SyntheticQuant, WeightsRequest};
use sdtp::prune::schedule::{PruneSchedule, ScorerKind};
use sdtp::prune::scorer::{build_scorer, check_scorer_before_load, Scorer};

pub struct Session {
    pub loaded: LoadedModel,
    pub dtype: DType,
    pub seed: u64,
}

impl Session {
    /// Resolves the model source and `schedules` against its config, checks the device and
    /// dtype, then loads the weights. Returns the session and the resolved schedules.
    pub fn open(model: &ModelArgs, schedules: &[&PruneArgs]) -> Result<(Self, Vec<PruneSchedule>)> {
        let source = ModelSource::resolve(model.model.as_deref())?;
        let config = read_config(&source)?;
        let resolved = schedules
            .iter()
            .map(|args| resolve_schedule(args, &config))
            .collect::<Result<Vec<_>>>()?;
        let mut options = load_options(model)?;
        resolve_weights(&source, &options)?;
        let device = open_device(model.device.parse::<DeviceRequest>()?)?;
        let dtype = resolve_dtype(model.dtype.parse::<DTypeRequest>()?, &device)?;
        options.dtype = dtype;
        if source.is_synthetic() {
            tracing::warn!(
                "{} has random weights: its timings are real, its text is meaningless",
                source.display_name()
            );
        }
        let loaded = load_model_with(&source, &device, &options)?;
        Ok((
            Self {
                loaded,
                dtype,
                seed: model.seed,
            },
            resolved,
        ))
    }

    /// The session's model loaded again, on the same device in the same dtype, with
    /// `weights` instead of `--weights`: the reference of `--reference-weights`.
    pub fn load_reference(
        &self,
        model: &ModelArgs,
        weights: WeightsRequest,
    ) -> Result<LoadedModel> {
        let options = LoadOptions {
            dtype: self.dtype,
            weights,
            ..load_options(model)?
        };
        load_model_with(&self.loaded.source, self.loaded.model.device(), &options)
    }

    pub fn scorer(&self, schedule: &PruneSchedule) -> Result<Box<dyn Scorer>> {
        let model = &self.loaded.model;
        build_scorer(schedule, model.config(), model.device(), self.seed)
    }

    pub fn model_name(&self) -> String {
        self.loaded.source.display_name()
    }

    /// The loaded model and the provenance of an eval report begun at `started`.
    pub fn eval_run(&self, started: SystemTime) -> EvalRun<'_> {
        EvalRun {
            loaded: &self.loaded,
            dtype: self.dtype,
            seed: self.seed,
            started,
        }
    }
}

/// `--weights`, `--quant` and `--seed` as load options (the dtype is set once the device is
/// known).
fn load_options(model: &ModelArgs) -> Result<LoadOptions> {
    Ok(LoadOptions {
        dtype: DType::F32,
        seed: model.seed,
        weights: model.weights.parse::<WeightsRequest>()?,
        quant: model
            .quant
            .as_deref()
            .map(str::parse::<SyntheticQuant>)
            .transpose()?,
    })
}

/// `--reference-weights` (`flag`) checked against the model before any weights load, as
/// `--weights` is: the weights to load the reference with when they hold the matrices
/// otherwise than `--weights` does, `None` when the reference is the run's own model (no flag,
/// or one that resolves to the same weights).
pub fn reference_weights(model: &ModelArgs, flag: Option<&str>) -> Result<Option<WeightsRequest>> {
    let Some(flag) = flag else {
        return Ok(None);
    };
    let request = flag.parse::<WeightsRequest>().map_err(|_| {
        anyhow::anyhow!("unknown --reference-weights {flag:?}; use auto, quantized or dequantized")
    })?;
    let source = ModelSource::resolve(model.model.as_deref())?;
    let options = load_options(model)?;
    let own = resolve_weights(&source, &options)?;
    let reference = resolve_weights(
        &source,
        &LoadOptions {
            weights: request,
            ..options
        },
    )
    .with_context(|| format!("--reference-weights {flag}"))?;
    Ok((reference != own).then_some(request))
}

/// A preset or TOML schedule for this model, with `--scorer` applied and any predictor
/// checked, all before the weights load.
fn resolve_schedule(
    args: &PruneArgs,
    config: &sdtp::model::config::ModelConfig,
) -> Result<PruneSchedule> {
    let resolution = PruneSchedule::resolve(&args.schedule, config.num_hidden_layers)?;
    if let Some(note) = &resolution.mapping {
        tracing::info!("{note}");
    }
    let mut schedule = resolution.schedule;
    if let Some(name) = &args.scorer {
        schedule.scorer = Some(name.parse::<ScorerKind>()?);
        schedule
            .validate(config.num_hidden_layers)
            .context("after applying --scorer")?;
    }
    check_scorer_before_load(&schedule, config)?;
    Ok(schedule)
}
