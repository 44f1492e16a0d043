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

use super::schedule::{
    AttentionScoring, HeadReduce, PruneSchedule, ScorerKind, SENTENCE_MAX_TOKENS,
};
use super::score_ops::{
    max_pool, question_overlap, rank01, rank01_tie_broken, relative_to_neighbours, sentence_max,
};
use super::select::mandatory_tail_len;
use crate::model::config::ModelConfig;
use crate::model::text::SentenceEnds;

/// What a scorer sees at a pruning layer.
pub struct ScoreInput<'a> {
    pub layer: usize,
    /// Output of the layer, (1, n, hidden); for a scorer that
    /// [reads only attention](Scorer::reads_only_attention), the layer's state after its
    /// attention block (such a scorer does not look at it).
    pub hidden: &'a Tensor,
    /// Mean attention the last queries paid to each token, per head, (heads, n) f32 (or (n,)
    /// for one combined head), when the scorer asked for it through [`Scorer::tail_queries`].
    pub tail_attention: Option<&'a Tensor>,
    /// Original prompt positions of the n tokens, when known: what a scorer that remembers
    /// tokens across stages keys them by.
    pub positions: Option<&'a [u32]>,
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

    /// Called by the prefill before its first layer with the prompt's ids and, when the
    /// model knows them, its sentence-ending tokens: a scorer that remembers tokens across
    /// stages forgets the previous prompt here.
    fn begin_prefill(&mut self, _ids: &[u32], _sentence_ends: Option<&SentenceEnds>) {}

    /// What the scores need from the device, one value per token: the part of scoring that
    /// must wait for the layer.
    fn read_scores(&mut self, input: &ScoreInput) -> Result<Vec<f32>>;

    /// Host-only work on what [`Scorer::read_scores`] returned (pooling, carrying). The
    /// pruned prefill runs it after queuing the layer's MLP, so the device is not idle
    /// meanwhile. `positions` are the tokens' original positions, when known.
    fn refine(&mut self, scores: Vec<f32>, _positions: Option<&[u32]>) -> Result<Vec<f32>> {
        Ok(scores)
    }

    /// One score per token (higher = more salient), `n` values: read, then refined.
    fn score(&mut self, input: &ScoreInput) -> Result<Vec<f32>> {
        let raw = self.read_scores(input)?;
        self.refine(raw, input.positions)
    }
}

/// The training-free default: the attention the prompt's last queries pay to each token,
/// combined over heads, pooled over neighbours and carried across stages as the schedule's
/// [`AttentionScoring`] says.
pub struct AttentionScorer {
    scoring: AttentionScoring,
    min_tail_ratio: f64,
    /// Layers of the model: `relative_depth` is a share of them.
    num_layers: usize,
    /// Whether the stage being scored (the layer [`Scorer::read_scores`] last saw) also ranks
    /// tokens against their neighbourhood.
    relative_now: bool,
    /// Carried score (a rank in [0, 1]) of each original position seen at an earlier stage
    /// of this prefill, indexed by position (0 where none yet).
    carried: Vec<f32>,
    /// The sentence of each original position of this prefill's prompt; empty when neither
    /// `sentences` nor `question_overlap` is on, or the model's sentence ends are unknown.
    sentence_of: Vec<u32>,
    /// With `question_overlap`, the share of the question each original position's sentence
    /// spells out; empty otherwise.
    overlap: Vec<f32>,
}

impl AttentionScorer {
    pub fn new(scoring: AttentionScoring, min_tail_ratio: f64, num_layers: usize) -> Self {
        Self {
            scoring,
            min_tail_ratio,
            num_layers,
            relative_now: false,
            carried: Vec::new(),
            sentence_of: Vec::new(),
            overlap: Vec::new(),
        }
    }
}

impl AttentionScorer {
    /// Notes the layer being scored: whether its stage also ranks tokens against their
    /// neighbourhood depends on it.
    fn enter_stage(&mut self, layer: usize) {
        self.relative_now = self.scoring.relative_at(layer, self.num_layers);
    }
}

impl Scorer for AttentionScorer {
    fn kind(&self) -> ScorerKind {
        ScorerKind::Attention
    }

    fn tail_queries(&self, n: usize) -> Option<usize> {
        Some(self.scoring.queries(n, self.min_tail_ratio))
    }

    fn reads_only_attention(&self) -> bool {
        true
    }

    fn begin_prefill(&mut self, ids: &[u32], sentence_ends: Option<&SentenceEnds>) {
        self.carried.clear();
        self.carried.resize(ids.len(), 0.0);
        self.sentence_of = match sentence_ends {
            // The question overlap is a sentence's share whether or not whole sentences rank
            // together.
            Some(ends) if self.scoring.sentences || self.scoring.question_overlap => {
                ends.sentence_ids(ids, SENTENCE_MAX_TOKENS)
            }
            _ => Vec::new(),
        };
        self.overlap = if self.scoring.question_overlap {
            let window = self.scoring.queries(ids.len(), self.min_tail_ratio);
            let tail = mandatory_tail_len(ids.len(), self.min_tail_ratio);
            let sentences = (!self.sentence_of.is_empty()).then_some(&self.sentence_of[..]);
            question_overlap(ids, window, tail, sentences)
        } else {
            Vec::new()
        };
    }

    fn read_scores(&mut self, input: &ScoreInput) -> Result<Vec<f32>> {
        self.enter_stage(input.layer);
        let attention = input
            .tail_attention
            .context("attention scorer ran without the layer's tail attention")?;
        let per_head = match attention.rank() {
            1 => attention.unsqueeze(0)?,
            _ => attention.clone(),
        };
        // Combined on the device: only n values cross to the host.
        let combined = match self.scoring.heads {
            HeadReduce::Max => per_head.max(0)?,
            HeadReduce::Mean => per_head.mean(0)?,
        };
        Ok(combined.to_vec1::<f32>()?)
    }

    fn refine(&mut self, raw: Vec<f32>, positions: Option<&[u32]>) -> Result<Vec<f32>> {
        if let Some(positions) = positions.filter(|p| p.len() != raw.len()) {
            bail!(
                "attention scorer: {} positions for {} tokens",
                positions.len(),
                raw.len()
            );
        }
        let pool = |scores: &[f32]| match self.scoring.pool {
            0 | 1 => scores.to_vec(),
            width => max_pool(scores, width),
        };
        // The sentence of each current token, looked up by its original position, where
        // whole sentences rank together.
        let sentences = positions
            .filter(|_| self.scoring.sentences)
            .and_then(|positions| {
                positions
                    .iter()
                    .map(|&p| self.sentence_of.get(p as usize).copied())
                    .collect::<Option<Vec<u32>>>()
                    .filter(|s| !s.is_empty())
            });
        // Whole sentences: every token of a sentence takes the best pooled score in it, so
        // the sentence is kept or dropped as one (a peak pooled in from the sentence before
        // would otherwise rank the sentence's head above its tail, and a later stage would
        // cut the value in two). Sentences that share a pooled peak rank by their own best
        // raw score, so the one holding the peak outranks those the pool reached. The result
        // is already ranks in [0, 1].
        let rank_whole = |signal: &[f32], sentences: &[u32]| {
            rank01_tie_broken(
                &sentence_max(&pool(signal), sentences),
                &sentence_max(signal, sentences),
            )
        };
        // At an early stage a token also ranks against its neighbourhood (the same pooling
        // and sentences), and counts by the better of the two ranks: the early layers'
        // attention falls with distance from the question, and a needle far back stands out
        // only from its own surroundings.
        let relative = match self.scoring.relative {
            width if width > 0 && self.relative_now => {
                let signal = relative_to_neighbours(&raw, width);
                Some(match &sentences {
                    Some(sentences) => rank_whole(&signal, sentences),
                    None => rank01(&pool(&signal)),
                })
            }
            _ => None,
        };
        let (scores, ranked) = match &sentences {
            Some(sentences) => (rank_whole(&raw, sentences), true),
            None if self.scoring.pool <= 1 => (raw, false),
            None => (pool(&raw), false),
        };
        // The share of the question a token's sentence spells out is a floor on its rank.
        let overlap: Option<Vec<f32>> =
            positions
                .filter(|_| !self.overlap.is_empty())
                .map(|positions| {
                    positions
                        .iter()
                        .map(|&p| self.overlap.get(p as usize).copied().unwrap_or(0.0))
                        .collect()
                });
        // What a token ranks at least at this stage, whatever its plain rank.
        let floor: Option<Vec<f32>> = match (relative, overlap) {
            (Some(r), Some(o)) => Some(r.into_iter().zip(o).map(|(a, b)| a.max(b)).collect()),
            (r, o) => r.or(o),
        };
        let carry = self.scoring.carry as f32;
        // Without positions there is nothing to carry by.
        let Some(positions) = positions.filter(|_| carry > 0.0) else {
            return Ok(match floor {
                Some(floor) => {
                    let ranks = if ranked { scores } else { rank01(&scores) };
                    ranks
                        .into_iter()
                        .zip(floor)
                        .map(|(a, b)| a.max(b))
                        .collect()
                }
                None => scores,
            });
        };
        let needed = positions.iter().max().map_or(0, |&p| p as usize + 1);
        if needed > self.carried.len() {
            self.carried.resize(needed, 0.0);
        }
        let ranks = if ranked { scores } else { rank01(&scores) };
        // Only the plain rank is carried to later stages: the relative one rescues a far
        // token at this stage, but carried on, its many local peaks would crowd every later
        // stage's choice (the question overlap needs no carrying: it holds at every stage).
        let ranked = ranks
            .into_iter()
            .zip(positions)
            .enumerate()
            .map(|(i, (rank, &p))| {
                let best = rank.max(carry * self.carried[p as usize]);
                self.carried[p as usize] = best;
                floor.as_ref().map_or(best, |f| best.max(f[i]))
            })
            .collect();
        Ok(ranked)
    }
}

/// L2 norm of each token's hidden state.
pub struct NormScorer;

impl Scorer for NormScorer {
    fn kind(&self) -> ScorerKind {
        ScorerKind::Norm
    }

    fn read_scores(&mut self, input: &ScoreInput) -> Result<Vec<f32>> {
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

    fn read_scores(&mut self, input: &ScoreInput) -> Result<Vec<f32>> {
        let n = input.hidden.dim(1)?;
        Ok((0..n).map(|_| self.rng.random::<f32>()).collect())
    }
}

/// What a learned predictor reads of each token, stored in its file under
/// [`PREDICTOR_INPUTS_KEY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictorInputs {
    /// The token's hidden state alone (SDTP's predictor, and every file without the key).
    Hidden,
    /// The hidden state and [`attention_features`]: how much each head's window of the
    /// prompt's last queries (the question) looks at the token.
    HiddenAndAttention,
}

impl PredictorInputs {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hidden => "hidden",
            Self::HiddenAndAttention => "hidden+attention",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "hidden" => Ok(Self::Hidden),
            "hidden+attention" => Ok(Self::HiddenAndAttention),
            other => bail!("unknown predictor inputs {other:?} (hidden | hidden+attention)"),
        }
    }

    /// Width of a token's input row for a model of `hidden` width and `heads` heads.
    pub fn width(self, hidden: usize, heads: usize) -> usize {
        match self {
            Self::Hidden => hidden,
            Self::HiddenAndAttention => hidden + heads + 1,
        }
    }
}

/// Floor of a token's attention relative to a uniform share (1/n) before the log.
const ATTENTION_FEATURE_FLOOR: f32 = 1e-3;

/// The question-aware input of each token, (n, heads + 1) f32, from the per-head attention
/// (heads, n) of the prompt's last queries: per head ln(max(a·n, 10⁻³)) — the attention as
/// a multiple of a uniform share, so prompts (and stages) of any length read alike — then
/// the max over heads (the training-free scorer's own signal).
pub fn attention_features(per_head: &Tensor) -> Result<Tensor> {
    let per_head = per_head.to_dtype(DType::F32)?;
    let n = per_head.dim(1)?;
    let relative = (per_head * n as f64)?
        .clamp(ATTENTION_FEATURE_FLOOR, f32::MAX)?
        .log()?
        .t()?;
    let best = relative.max_keepdim(1)?;
    Ok(Tensor::cat(&[&relative, &best], 1)?.contiguous()?)
}

/// A predictor's input rows (n, width) from hidden states (n, hidden) and, for
/// [`PredictorInputs::HiddenAndAttention`], the per-head tail attention (heads, n).
pub fn predictor_input(
    inputs: PredictorInputs,
    hidden: &Tensor,
    per_head: Option<&Tensor>,
) -> Result<Tensor> {
    let hidden = hidden.to_dtype(DType::F32)?;
    match inputs {
        PredictorInputs::Hidden => Ok(hidden),
        PredictorInputs::HiddenAndAttention => {
            let per_head = per_head.context(
                "the learned scorer reads the window's attention, but the layer gave none",
            )?;
            let per_head = match per_head.rank() {
                1 => per_head.unsqueeze(0)?,
                _ => per_head.clone(),
            };
            let features = attention_features(&per_head.to_device(hidden.device())?)?;
            Ok(Tensor::cat(&[&hidden, &features], 1)?)
        }
    }
}

/// SDTP's learned saliency predictor: per pruning layer, input → hidden/4 → GELU → 1, on the
/// token's hidden state and, for a question-aware predictor, [`attention_features`]. Its
/// scores then go through the same refinement as the attention scorer's (pooling, whole
/// sentences, carry, question overlap: the schedule's `[attention]` section), so the two
/// differ only in how a token's raw score is read.
pub struct LearnedScorer {
    stages: BTreeMap<usize, (Linear, Linear)>,
    inputs: PredictorInputs,
    heads: usize,
    /// Refines the learned scores as the attention scorer refines its own (and asks the
    /// layers for the window's attention).
    window: AttentionScorer,
    /// With `union`: the attention scorer whose rank a token may take instead, and its raw
    /// read of the stage being scored.
    union: Option<(AttentionScorer, Vec<f32>)>,
}

/// Metadata keys of a predictor safetensors file.
pub const PREDICTOR_MODEL_KEY: &str = "sdtp.model";
pub const PREDICTOR_LAYERS_KEY: &str = "sdtp.layers";
pub const PREDICTOR_INPUTS_KEY: &str = "sdtp.inputs";

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
    /// onto a device, so a mismatch fails before the model loads; returns what it reads.
    pub fn check_file(
        path: &Path,
        cfg: &ModelConfig,
        schedule: &PruneSchedule,
    ) -> Result<PredictorInputs> {
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
        md.get(PREDICTOR_INPUTS_KEY)
            .map_or(Ok(PredictorInputs::Hidden), |s| PredictorInputs::parse(s))
            .with_context(|| format!("predictor {}", path.display()))
    }

    pub fn load(
        path: &Path,
        cfg: &ModelConfig,
        schedule: &PruneSchedule,
        device: &Device,
    ) -> Result<Self> {
        let inputs = Self::check_file(path, cfg, schedule)?;
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[path], DType::F32, device) }
            .with_context(|| format!("cannot map predictor {}", path.display()))?;
        let heads = cfg.num_attention_heads;
        let (width, inner) = (inputs.width(cfg.hidden_size, heads), cfg.hidden_size / 4);
        let mut stages = BTreeMap::new();
        for stage in &schedule.stages {
            let vb = vb.pp(format!("layers.{}", stage.layer));
            let fc1 = candle_nn::linear(width, inner, vb.pp("fc1"))
                .with_context(|| format!("predictor {} layer {}", path.display(), stage.layer))?;
            let fc2 = candle_nn::linear(inner, 1, vb.pp("fc2"))
                .with_context(|| format!("predictor {} layer {}", path.display(), stage.layer))?;
            stages.insert(stage.layer, (fc1, fc2));
        }
        let refiner = || {
            AttentionScorer::new(
                schedule.attention,
                schedule.min_tail_ratio,
                cfg.num_hidden_layers,
            )
        };
        Ok(Self {
            stages,
            inputs,
            heads,
            window: refiner(),
            union: schedule.attention.union.then(|| (refiner(), Vec::new())),
        })
    }
}

impl Scorer for LearnedScorer {
    fn kind(&self) -> ScorerKind {
        ScorerKind::Learned
    }

    fn tail_queries(&self, n: usize) -> Option<usize> {
        if self.inputs == PredictorInputs::HiddenAndAttention || self.union.is_some() {
            self.window.tail_queries(n)
        } else {
            None
        }
    }

    fn begin_prefill(&mut self, ids: &[u32], sentence_ends: Option<&SentenceEnds>) {
        self.window.begin_prefill(ids, sentence_ends);
        if let Some((attention, _)) = &mut self.union {
            attention.begin_prefill(ids, sentence_ends);
        }
    }

    fn read_scores(&mut self, input: &ScoreInput) -> Result<Vec<f32>> {
        let (fc1, fc2) = self
            .stages
            .get(&input.layer)
            .with_context(|| format!("predictor has no stage for layer {}", input.layer))?;
        self.window.enter_stage(input.layer);
        if let Some(t) = input.tail_attention.filter(|t| t.rank() == 2) {
            if t.dim(0)? != self.heads {
                bail!(
                    "the learned scorer was trained on {} heads' attention, the layer gave {}",
                    self.heads,
                    t.dim(0)?
                );
            }
        }
        if let Some((attention, raw)) = &mut self.union {
            *raw = attention.read_scores(input)?;
        }
        let x = predictor_input(self.inputs, &input.hidden.squeeze(0)?, input.tail_attention)?;
        let y = fc2.forward(&fc1.forward(&x)?.gelu_erf()?)?;
        Ok(y.squeeze(D::Minus1)?.to_vec1::<f32>()?)
    }

    fn refine(&mut self, scores: Vec<f32>, positions: Option<&[u32]>) -> Result<Vec<f32>> {
        let learned = self.window.refine(scores, positions)?;
        let Some((attention, raw)) = &mut self.union else {
            return Ok(learned);
        };
        if raw.len() != learned.len() {
            bail!(
                "learned scorer: {} attention scores for {} tokens",
                raw.len(),
                learned.len()
            );
        }
        let attention = attention.refine(std::mem::take(raw), positions)?;
        Ok(rank01(&learned)
            .into_iter()
            .zip(rank01(&attention))
            .map(|(a, b)| a.max(b))
            .collect())
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
        ScorerKind::Attention => Box::new(AttentionScorer::new(
            schedule.attention,
            schedule.min_tail_ratio,
            cfg.num_hidden_layers,
        )),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scorer(window: usize, heads: HeadReduce, pool: usize, carry: f64) -> AttentionScorer {
        AttentionScorer::new(
            AttentionScoring {
                window,
                heads,
                pool,
                carry,
                sentences: false,
                relative: 0,
                relative_depth: 1.0,
                question_overlap: false,
                union: false,
            },
            0.1,
            32,
        )
    }

    fn score(s: &mut AttentionScorer, rows: &[&[f32]], positions: Option<&[u32]>) -> Vec<f32> {
        let n = rows[0].len();
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let attention = Tensor::from_vec(flat, (rows.len(), n), &Device::Cpu).unwrap();
        let hidden = Tensor::zeros((1, n, 4), DType::F32, &Device::Cpu).unwrap();
        s.score(&ScoreInput {
            layer: 0,
            hidden: &hidden,
            tail_attention: Some(&attention),
            positions,
        })
        .unwrap()
    }

    #[test]
    fn heads_combine_by_max_or_mean() {
        // Head 0 spreads its attention; head 1 looks only at token 3.
        let rows: [&[f32]; 2] = [&[0.3, 0.3, 0.3, 0.0, 0.1], &[0.0, 0.0, 0.0, 1.0, 0.0]];
        let max = score(&mut scorer(8, HeadReduce::Max, 1, 0.0), &rows, None);
        assert_eq!(max, vec![0.3, 0.3, 0.3, 1.0, 0.1]);
        let mean = score(&mut scorer(8, HeadReduce::Mean, 1, 0.0), &rows, None);
        assert_eq!(mean, vec![0.15, 0.15, 0.15, 0.5, 0.05]);
        // A combined (n,) input is one head.
        let one = score(&mut scorer(8, HeadReduce::Max, 1, 0.0), &rows[..1], None);
        assert_eq!(one, rows[0].to_vec());
    }

    #[test]
    fn pooling_lifts_the_neighbours_of_a_peak() {
        let rows: [&[f32]; 1] = [&[0.1, 0.0, 0.0, 0.9, 0.0, 0.0, 0.05]];
        let pooled = score(&mut scorer(8, HeadReduce::Max, 3, 0.0), &rows, None);
        assert_eq!(pooled, vec![0.1, 0.1, 0.9, 0.9, 0.9, 0.05, 0.05]);
    }

    #[test]
    fn sentences_are_scored_whole_and_the_peak_sentence_wins_ties() {
        let mut s = AttentionScorer::new(
            AttentionScoring {
                window: 8,
                heads: HeadReduce::Max,
                pool: 5,
                carry: 0.0,
                sentences: true,
                relative: 0,
                relative_depth: 1.0,
                question_overlap: false,
                union: false,
            },
            0.1,
            32,
        );
        // Bytes: "ab. cd. ef" → sentences "ab." | " cd." | " ef".
        let ends = SentenceEnds::from_codec(&crate::model::text::TextCodec::Bytes, 256);
        let ids: Vec<u32> = "ab. cd. ef".bytes().map(u32::from).collect();
        s.begin_prefill(&ids, Some(&ends));
        let positions: Vec<u32> = (0..10).collect();
        // The peak is on 'c' (index 4): the 5-wide pool lifts the '.' of "ab." too, so both
        // sentences hold the pooled peak; " cd." holds the raw peak and ranks first, whole.
        let raw = [0.1, 0.0, 0.0, 0.0, 0.9, 0.0, 0.0, 0.0, 0.2, 0.0];
        let out = score(&mut s, &[&raw], Some(&positions));
        let top = out[3];
        assert!(out[3..7].iter().all(|&v| v == top), "{out:?}");
        assert!(out[..3].iter().all(|&v| v == out[0] && v < top), "{out:?}");
        assert!(
            out[7..].iter().all(|&v| v == out[7] && v < out[0]),
            "{out:?}"
        );
        // A pruned sequence: positions 3..7 gone, sentences are still looked up by position.
        let kept: Vec<u32> = vec![0, 1, 2, 7, 8, 9];
        let out = score(&mut s, &[&[0.0, 0.5, 0.0, 0.0, 0.0, 0.1]], Some(&kept));
        assert_eq!(out[0], out[2]);
        assert!(out[0] > out[3] && out[3] == out[5], "{out:?}");
        // Without sentence ends the scorer works per token.
        s.begin_prefill(&ids, None);
        let plain = score(&mut s, &[&raw], Some(&positions));
        assert_eq!(plain, max_pool(&raw, 5));
    }

    #[test]
    fn window_sets_the_scoring_queries() {
        assert_eq!(
            scorer(32, HeadReduce::Max, 1, 0.0).tail_queries(1000),
            Some(32)
        );
        assert_eq!(
            scorer(32, HeadReduce::Max, 1, 0.0).tail_queries(20),
            Some(20)
        );
        // 0: the protected tail, ceil(0.1 · 1000).
        assert_eq!(
            scorer(0, HeadReduce::Max, 1, 0.0).tail_queries(1000),
            Some(100)
        );
    }

    #[test]
    fn carry_keeps_a_token_found_earlier() {
        let mut s = scorer(8, HeadReduce::Max, 1, 1.0);
        // Stage 1 over positions 0..5: position 2 is the most attended.
        let first = score(
            &mut s,
            &[&[0.1, 0.2, 0.9, 0.3, 0.4]],
            Some(&[0, 1, 2, 3, 4]),
        );
        assert_eq!(first, vec![0.0, 0.25, 1.0, 0.5, 0.75]);
        // Stage 2 keeps positions 1, 2, 4 and looks elsewhere: position 2 keeps its rank.
        let second = score(&mut s, &[&[0.5, 0.0, 0.2]], Some(&[1, 2, 4]));
        assert_eq!(second, vec![1.0, 1.0, 0.75]);
        // Half-strength carry: the earlier rank counts half.
        let mut half = scorer(8, HeadReduce::Max, 1, 0.5);
        score(&mut half, &[&[0.1, 0.9]], Some(&[7, 9]));
        assert_eq!(
            score(&mut half, &[&[0.9, 0.1, 0.5]], Some(&[7, 9, 11])),
            vec![1.0, 0.5, 0.5]
        );
        // Without positions there is nothing to carry by: the plain scores.
        let plain = score(&mut s, &[&[0.5, 0.0, 0.2]], None);
        assert_eq!(plain, vec![0.5, 0.0, 0.2]);
        // A new prefill forgets the last one's tokens.
        s.begin_prefill(&[0; 5], None);
        let fresh = score(&mut s, &[&[0.5, 0.0, 0.2]], Some(&[1, 2, 4]));
        assert_eq!(fresh, vec![1.0, 0.0, 0.5]);
    }

    #[test]
    fn relative_ranks_rescue_a_far_peak_at_early_stages_only_and_are_not_carried() {
        let scoring = AttentionScoring {
            window: 8,
            heads: HeadReduce::Max,
            pool: 1,
            carry: 1.0,
            sentences: false,
            relative: 5,
            relative_depth: 0.25,
            question_overlap: false,
            union: false,
        };
        let mut s = AttentionScorer::new(scoring, 0.1, 32);
        let at = |s: &mut AttentionScorer, layer: usize, raw: &[f32], positions: &[u32]| {
            let attention = Tensor::from_slice(raw, (1, raw.len()), &Device::Cpu).unwrap();
            let hidden = Tensor::zeros((1, raw.len(), 4), DType::F32, &Device::Cpu).unwrap();
            s.score(&ScoreInput {
                layer,
                hidden: &hidden,
                tail_attention: Some(&attention),
                positions: Some(positions),
            })
            .unwrap()
        };
        // Far back (positions 0..5) attention is faint, with a peak at 2; the recent half
        // draws more everywhere.
        let raw = [
            0.010, 0.010, 0.040, 0.010, 0.010, 0.20, 0.21, 0.22, 0.23, 0.24,
        ];
        let positions: Vec<u32> = (0..10).collect();
        // Layer 4 < 0.25 · 32: the far peak ranks with the best of the recent tokens.
        let early = at(&mut s, 4, &raw, &positions);
        assert!(early[2] >= early[5] && early[2] > early[1], "{early:?}");
        // Plain ranks put it below every recent token.
        let mut plain = AttentionScorer::new(
            AttentionScoring {
                relative: 0,
                ..scoring
            },
            0.1,
            32,
        );
        let p = at(&mut plain, 4, &raw, &positions);
        assert!(p[2] < p[5], "{p:?}");
        // Layer 8 is not early: plain ranks, and what was carried is the plain rank of
        // layer 4 (4/9), not the relative one.
        s.begin_prefill(&[0; 10], None);
        at(&mut s, 4, &raw, &positions);
        let later = at(&mut s, 8, &[0.0, 0.0, 0.0, 0.5, 0.6], &[2, 5, 6, 7, 8]);
        assert!((later[0] - 4.0 / 9.0).abs() < 1e-6, "{later:?}");
        assert!(!scoring.relative_at(8, 32) && scoring.relative_at(7, 32));
    }

    #[test]
    fn question_overlap_floors_the_rank_of_a_sentence_naming_the_key() {
        let scoring = AttentionScoring {
            window: 6,
            heads: HeadReduce::Max,
            pool: 1,
            carry: 1.0,
            sentences: true,
            relative: 0,
            relative_depth: 1.0,
            question_overlap: true,
            union: false,
        };
        // Bytes: filler "aa. ", the key sentence "kq. ", filler, then the question "kq?".
        let text = "aa. aa. kq. aa. aa. aa. kq?";
        let ids: Vec<u32> = text.bytes().map(u32::from).collect();
        let ends = SentenceEnds::from_codec(&crate::model::text::TextCodec::Bytes, 256);
        let positions: Vec<u32> = (0..ids.len() as u32).collect();
        // The layer's attention looks only at the recent filler.
        let mut raw = vec![0.0f32; ids.len()];
        for v in &mut raw[12..20] {
            *v = 0.5;
        }
        let mut with = AttentionScorer::new(scoring, 0.1, 32);
        with.begin_prefill(&ids, Some(&ends));
        let out = score(&mut with, &[&raw], Some(&positions));
        let mut without = AttentionScorer::new(
            AttentionScoring {
                question_overlap: false,
                union: false,
                ..scoring
            },
            0.1,
            32,
        );
        without.begin_prefill(&ids, Some(&ends));
        let plain = score(&mut without, &[&raw], Some(&positions));
        // "kq." (bytes 8..11) holds the question's rare bytes: it outranks the far filler
        // with the floor, and ranks with it without.
        assert!(out[9] > out[1] && out[9] >= plain[9], "{out:?}");
        assert_eq!(plain[9], plain[1], "{plain:?}");
        // Never below the plain rank.
        assert!(out.iter().zip(&plain).all(|(a, b)| a >= b));
    }

    #[test]
    fn question_overlap_floors_the_whole_key_sentence_when_tokens_rank_alone() {
        let scoring = AttentionScoring {
            window: 6,
            heads: HeadReduce::Max,
            pool: 1,
            carry: 1.0,
            sentences: false,
            relative: 0,
            relative_depth: 1.0,
            question_overlap: true,
            union: false,
        };
        // The key sentence "kq 12." (bytes 8..14): its value "12" is not in the question.
        let text = "aa. aa. kq 12. aa. aa. kq?";
        let ids: Vec<u32> = text.bytes().map(u32::from).collect();
        let ends = SentenceEnds::from_codec(&crate::model::text::TextCodec::Bytes, 256);
        let positions: Vec<u32> = (0..ids.len() as u32).collect();
        // Attention rises towards the question, so each token ranks by itself.
        let raw: Vec<f32> = (0..ids.len()).map(|i| i as f32).collect();
        let mut s = AttentionScorer::new(scoring, 0.1, 32);
        s.begin_prefill(&ids, Some(&ends));
        let out = score(&mut s, &[&raw], Some(&positions));
        // The value's digits take the sentence's floor (the best share: 1), though the
        // question never names them ...
        assert!(out[8..14].iter().all(|&v| v == 1.0), "{out:?}");
        // ... while the filler around it keeps its own per-token ranks.
        assert!(out[0] < out[1] && out[1] < out[2], "{out:?}");
        assert!(out[14] < 1.0 && out[15] < out[16], "{out:?}");
    }
}
