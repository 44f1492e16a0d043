//! Token saliency scorers behind one trait: `learned` (the SDTP per-stage MLP), `attention`
//! (training-free, LazyLLM-style), `norm`, and `random` (the control).
//!
//! A scorer only ranks; which tokens survive is decided by `select::apply_token_pruning`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use rand::{Rng, SeedableRng};

use super::schedule::{PruneSchedule, ScorerKind};
use super::select::mandatory_tail_len;
use crate::model::config::ModelConfig;

/// What a scorer sees at a pruning layer.
pub struct ScoreInput<'a> {
    pub layer: usize,
    /// Output of the layer, (1, n, hidden); for a scorer that
    /// [reads only attention](Scorer::reads_only_attention), the layer's state after its
    /// attention block (such a scorer does not look at it).
    pub hidden: &'a Tensor,
    /// Mean attention (n,) f32 the last queries paid to each token, when the scorer asked
    /// for it through [`Scorer::tail_queries`].
    pub tail_attention: Option<&'a Tensor>,
}

pub trait Scorer {
    fn kind(&self) -> ScorerKind;

    /// How many trailing queries' attention the layer must report for `n` tokens; `None`
    /// when the scorer does not use attention (saves the extra score computation).
    fn tail_queries(&self, _n: usize) -> Option<usize> {
        None
    }

    /// True when [`Scorer::score`] reads only `tail_attention`: the pruned prefill then asks
    /// for the scores as soon as the layer's attention is done, and picks the kept tokens on
    /// the host while the device runs the layer's MLP instead of idling.
    fn reads_only_attention(&self) -> bool {
        false
    }

    /// One score per token (higher = more salient), `n` values.
    fn score(&mut self, input: &ScoreInput) -> Result<Vec<f32>>;
}

/// The training-free default: tokens the last `ceil(min_tail_ratio · n)` queries attend to.
pub struct AttentionScorer {
    min_tail_ratio: f64,
}

impl Scorer for AttentionScorer {
    fn kind(&self) -> ScorerKind {
        ScorerKind::Attention
    }

    fn tail_queries(&self, n: usize) -> Option<usize> {
        Some(mandatory_tail_len(n, self.min_tail_ratio))
    }

    fn reads_only_attention(&self) -> bool {
        true
    }

    fn score(&mut self, input: &ScoreInput) -> Result<Vec<f32>> {
        let attention = input
            .tail_attention
            .context("attention scorer ran without the layer's tail attention")?;
        Ok(attention.to_vec1::<f32>()?)
    }
}

/// L2 norm of each token's hidden state.
pub struct NormScorer;

impl Scorer for NormScorer {
    fn kind(&self) -> ScorerKind {
        ScorerKind::Norm
    }

    fn score(&mut self, input: &ScoreInput) -> Result<Vec<f32>> {
        let norms = input
            .hidden
            .to_dtype(DType::F32)?
            .sqr()?
            .sum(D::Minus1)?
            .sqrt()?
            .squeeze(0)?;
        Ok(norms.to_vec1::<f32>()?)
    }
}

/// Uniform random scores from a seeded generator: the control every scorer must beat.
pub struct RandomScorer {
    rng: rand::rngs::StdRng,
}

impl RandomScorer {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: rand::rngs::StdRng::seed_from_u64(seed),
        }
    }
}

impl Scorer for RandomScorer {
    fn kind(&self) -> ScorerKind {
        ScorerKind::Random
    }

    fn score(&mut self, input: &ScoreInput) -> Result<Vec<f32>> {
        let n = input.hidden.dim(1)?;
        Ok((0..n).map(|_| self.rng.random::<f32>()).collect())
    }
}

/// SDTP's learned saliency predictor: per pruning layer, hidden → hidden/4 → GELU → 1.
pub struct LearnedScorer {
    stages: BTreeMap<usize, (Linear, Linear)>,
}

/// Metadata keys of a predictor safetensors file.
pub const PREDICTOR_MODEL_KEY: &str = "sdtp.model";
pub const PREDICTOR_LAYERS_KEY: &str = "sdtp.layers";

/// A short identity of a model's shape, stored in predictors and saliency datasets so that
/// one trained for another model is refused.
pub fn model_fingerprint(cfg: &ModelConfig) -> String {
    format!(
        "{:?}-l{}-h{}-i{}-a{}-kv{}-v{}",
        cfg.architecture,
        cfg.num_hidden_layers,
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.vocab_size
    )
    .to_lowercase()
}

impl LearnedScorer {
    /// Checks a predictor file against the model and the schedule without loading tensors
    /// onto a device, so a mismatch fails before the model loads.
    pub fn check_file(path: &Path, cfg: &ModelConfig, schedule: &PruneSchedule) -> Result<()> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read predictor {}", path.display()))?;
        let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
            .with_context(|| format!("predictor {} is not a safetensors file", path.display()))?;
        let md = metadata.metadata().clone().unwrap_or_default();
        let expected = model_fingerprint(cfg);
        match md.get(PREDICTOR_MODEL_KEY) {
            Some(found) if *found == expected => {}
            Some(found) => bail!(
                "predictor {} was trained for model {found}, not {expected}; train one with `sdtp train-predictor` or use --schedule with scorer = \"attention\"",
                path.display()
            ),
            None => bail!(
                "predictor {} has no {PREDICTOR_MODEL_KEY} metadata; it was not written by sdtp",
                path.display()
            ),
        }
        let layers: Vec<usize> = md
            .get(PREDICTOR_LAYERS_KEY)
            .map(|s| s.split(',').filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default();
        if let Some(stage) = schedule.stages.iter().find(|s| !layers.contains(&s.layer)) {
            bail!(
                "predictor {} has no stage for layer {} (it has layers {layers:?}); use a schedule with those layers",
                path.display(),
                stage.layer
            );
        }
        Ok(())
    }

    pub fn load(
        path: &Path,
        cfg: &ModelConfig,
        schedule: &PruneSchedule,
        device: &Device,
    ) -> Result<Self> {
        Self::check_file(path, cfg, schedule)?;
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }
            .with_context(|| format!("cannot map predictor {}", path.display()))?;
        let (h, inner) = (cfg.hidden_size, cfg.hidden_size / 4);
        let mut stages = BTreeMap::new();
        for stage in &schedule.stages {
            let vb = vb.pp(format!("layers.{}", stage.layer));
            let fc1 = candle_nn::linear(h, inner, vb.pp("fc1"))
                .with_context(|| format!("predictor {} layer {}", path.display(), stage.layer))?;
            let fc2 = candle_nn::linear(inner, 1, vb.pp("fc2"))
                .with_context(|| format!("predictor {} layer {}", path.display(), stage.layer))?;
            stages.insert(stage.layer, (fc1, fc2));
        }
        Ok(Self { stages })
    }
}

impl Scorer for LearnedScorer {
    fn kind(&self) -> ScorerKind {
        ScorerKind::Learned
    }

    fn score(&mut self, input: &ScoreInput) -> Result<Vec<f32>> {
        let (fc1, fc2) = self
            .stages
            .get(&input.layer)
            .with_context(|| format!("predictor has no stage for layer {}", input.layer))?;
        let x = input.hidden.to_dtype(DType::F32)?;
        let y = fc2.forward(&fc1.forward(&x)?.gelu_erf()?)?;
        Ok(y.squeeze(0)?.squeeze(D::Minus1)?.to_vec1::<f32>()?)
    }
}

/// The scorer a schedule asks for; with none named, `learned` when the schedule carries a
/// predictor, else `attention` (and the run says so).
pub fn build_scorer(
    schedule: &PruneSchedule,
    cfg: &ModelConfig,
    device: &Device,
    seed: u64,
) -> Result<Box<dyn Scorer>> {
    let kind = effective_scorer_kind(schedule);
    if schedule.scorer.is_none() && !schedule.stages.is_empty() {
        tracing::info!(
            "schedule {} names no scorer; using {} ({})",
            schedule.name,
            kind.as_str(),
            if kind == ScorerKind::Learned {
                "it has a predictor"
            } else {
                "no trained predictor for this model"
            }
        );
    }
    Ok(match kind {
        ScorerKind::Attention => Box::new(AttentionScorer {
            min_tail_ratio: schedule.min_tail_ratio,
        }),
        ScorerKind::Norm => Box::new(NormScorer),
        ScorerKind::Random => Box::new(RandomScorer::new(seed)),
        ScorerKind::Learned => {
            let path = schedule
                .predictor
                .as_deref()
                .context("the learned scorer needs `predictor` in the schedule")?;
            Box::new(LearnedScorer::load(path, cfg, schedule, device)?)
        }
    })
}

pub fn effective_scorer_kind(schedule: &PruneSchedule) -> ScorerKind {
    match (schedule.scorer, &schedule.predictor) {
        (Some(kind), _) => kind,
        (None, Some(_)) => ScorerKind::Learned,
        (None, None) => ScorerKind::Attention,
    }
}

/// Checks what can be checked of a schedule's scorer before the model loads.
pub fn check_scorer_before_load(schedule: &PruneSchedule, cfg: &ModelConfig) -> Result<()> {
    if effective_scorer_kind(schedule) == ScorerKind::Learned {
        let path = schedule
            .predictor
            .as_deref()
            .context("the learned scorer needs `predictor` in the schedule")?;
        LearnedScorer::check_file(path, cfg, schedule)?;
    }
    Ok(())
}
