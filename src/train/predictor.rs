//! Training the SDTP saliency predictor: per stage an MLP hidden → hidden/4 → GELU → 1 on
//! the frozen model's hidden states, supervised by π̂ from a saliency dataset.
//!
//! Loss per stage and batch = `mse_weight` · MSE(π, rank-normalised π̂) + `rank_weight` ·
//! mean over sampled pairs of log(1 + exp(−(π_i − π_j) · sign(π̂_i − π̂_j))) — the paper's
//! pairwise ranking loss, averaged instead of summed so its scale does not depend on the
//! number of pairs. AdamW; after each epoch the held-out Spearman correlation of π and π̂ is
//! measured per stage, each stage keeps its best epoch's weights, and training stops when
//! the mean over stages has not improved for `patience` epochs.
//!
//! Inputs are standardised per dimension (train-split mean and deviation) while training,
//! and the standardisation is folded into fc1 when the weights are exported, so the file
//! holds exactly the plain MLP that `LearnedScorer` runs on raw hidden states.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::dataset::{stage_input, StoredSequence};
use super::metrics::{normalised_ranks, spearman};
use super::safetensors_io::{write_safetensors, RawTensor};
use crate::prune::scorer::PredictorInputs;

/// What the predictor learns to rank, derived from the stored π̂ = Σ_d ∂L/∂h ⊙ h.
///
/// With L the loss, π̂_t is the first-order change of the loss when h_t is scaled up by a
/// small fraction, so removing the token changes the loss by about −π̂_t: `signed` ranks
/// tokens as π̂ does (the label, literally), `negated` ranks by −π̂ (tokens whose
/// removal would raise the loss most first), `abs` by |π̂| (tokens whose removal would
/// change the loss most, either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SaliencyTarget {
    Signed,
    Negated,
    Abs,
}

impl SaliencyTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Signed => "signed",
            Self::Negated => "negated",
            Self::Abs => "abs",
        }
    }

    /// The target values of one sequence's π̂.
    pub fn apply(self, saliency: &[f32]) -> Vec<f32> {
        match self {
            Self::Signed => saliency.to_vec(),
            Self::Negated => saliency.iter().map(|v| -v).collect(),
            Self::Abs => saliency.iter().map(|v| v.abs()).collect(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub max_epochs: usize,
    /// Sequences per optimiser step.
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Ranking pairs sampled per sequence and stage at each step.
    pub pairs_per_sequence: usize,
    pub mse_weight: f64,
    pub rank_weight: f64,
    /// Epochs without a better mean held-out Spearman before stopping.
    pub patience: usize,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            max_epochs: 40,
            batch_size: 4,
            learning_rate: 1e-3,
            weight_decay: 0.01,
            pairs_per_sequence: 2048,
            mse_weight: 1.0,
            rank_weight: 1.0,
            patience: 6,
            seed: 0,
        }
    }
}

/// One stage's MLP as plain tensors: fc1 (h/4, h) + (h/4,), fc2 (1, h/4) + (1,), f32.
#[derive(Debug, Clone)]
pub struct StageWeights {
    pub layer: usize,
    pub fc1_weight: Tensor,
    pub fc1_bias: Tensor,
    pub fc2_weight: Tensor,
    pub fc2_bias: Tensor,
}

impl StageWeights {
    /// Scores (n,) of hidden states (n, h): fc2(GELU(fc1(x))), as `LearnedScorer` computes.
    pub fn score(&self, hidden: &Tensor) -> Result<Vec<f32>> {
        let inner = hidden
            .matmul(&self.fc1_weight.t()?)?
            .broadcast_add(&self.fc1_bias)?
            .gelu_erf()?;
        let out = inner
            .matmul(&self.fc2_weight.t()?)?
            .broadcast_add(&self.fc2_bias)?;
        Ok(out.squeeze(D::Minus1)?.to_vec1::<f32>()?)
    }
}

/// What one epoch did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_mse: f64,
    pub train_rank: f64,
    /// Mean held-out Spearman per stage, in stage order.
    pub heldout_spearman: Vec<f64>,
    pub heldout_spearman_mean: f64,
    pub seconds: f64,
}

/// What a predictor reads and how wide it is.
#[derive(Debug, Clone, Copy)]
pub struct PredictorShape {
    pub inputs: PredictorInputs,
    pub hidden_size: usize,
    /// Attention heads of the model (the attention inputs' width).
    pub heads: usize,
}

impl PredictorShape {
    fn width(&self) -> usize {
        self.inputs.width(self.hidden_size, self.heads)
    }
}

/// The trained predictor and how it got there.
pub struct Trained {
    pub inputs: PredictorInputs,
    /// Exported (standardisation folded in), one per stage, in stage order.
    pub stages: Vec<StageWeights>,
    /// Epoch (1-based) whose weights each stage kept.
    pub best_epoch: Vec<usize>,
    pub history: Vec<EpochLog>,
}

/// Progress reports for the caller's bar and log.
pub enum TrainEvent<'a> {
    EpochStart { epoch: usize, steps: usize },
    Step { loss: f64 },
    EpochEnd(&'a EpochLog),
}

/// The trainable MLP of one stage, on standardised input.
struct StageMlp {
    layer: usize,
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
    /// (1, h) per-dimension mean and 1/deviation of the train split's hidden states.
    mean: Tensor,
    inv_sd: Tensor,
}

impl StageMlp {
    fn new(
        layer: usize,
        (hidden, inner): (usize, usize),
        mean: Tensor,
        inv_sd: Tensor,
        rng: &mut impl Rng,
    ) -> Result<Self> {
        let device = mean.device().clone();
        // PyTorch's nn.Linear default: U(-1/√fan_in, 1/√fan_in) for weights and biases.
        let mut uniform = |shape: &[usize], fan_in: usize| -> Result<Var> {
            let bound = 1.0 / (fan_in as f32).sqrt();
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
            Ok(Var::from_tensor(&Tensor::from_vec(
                values, shape, &device,
            )?)?)
        };
        Ok(Self {
            layer,
            w1: uniform(&[inner, hidden], hidden)?,
            b1: uniform(&[inner], hidden)?,
            w2: uniform(&[1, inner], inner)?,
            b2: uniform(&[1], inner)?,
            mean,
            inv_sd,
        })
    }

    fn vars(&self) -> Vec<Var> {
        vec![
            self.w1.clone(),
            self.b1.clone(),
            self.w2.clone(),
            self.b2.clone(),
        ]
    }

    /// (n, width) raw input rows → (n,) scores.
    fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let x = hidden
            .broadcast_sub(&self.mean)?
            .broadcast_mul(&self.inv_sd)?;
        let inner = x
            .matmul(&self.w1.as_tensor().t()?)?
            .broadcast_add(self.b1.as_tensor())?
            .gelu_erf()?;
        Ok(inner
            .matmul(&self.w2.as_tensor().t()?)?
            .broadcast_add(self.b2.as_tensor())?
            .squeeze(D::Minus1)?)
    }

    /// Plain weights on raw input: W' = W·diag(1/σ), b' = b − W'·μ.
    fn export(&self) -> Result<StageWeights> {
        let w1 = self.w1.as_tensor().broadcast_mul(&self.inv_sd)?;
        let shift = w1.matmul(&self.mean.t()?)?.squeeze(1)?;
        Ok(StageWeights {
            layer: self.layer,
            fc1_weight: w1.copy()?,
            fc1_bias: (self.b1.as_tensor() - shift)?.copy()?,
            fc2_weight: self.w2.as_tensor().copy()?,
            fc2_bias: self.b2.as_tensor().copy()?,
        })
    }
}

/// Per-dimension mean and 1/deviation (deviation floored at 1e-4 of the largest) over every
/// token's input row at stage `k`, as (1, width) tensors.
fn standardisation(rows: &[Vec<Tensor>], k: usize) -> Result<(Tensor, Tensor)> {
    let mut sum: Option<Tensor> = None;
    let mut sum_sq: Option<Tensor> = None;
    let mut count = 0usize;
    for s in rows {
        let h = s[k].to_dtype(DType::F64)?;
        count += h.dim(0)?;
        let (a, b) = (h.sum_keepdim(0)?, h.sqr()?.sum_keepdim(0)?);
        sum = Some(match sum {
            Some(x) => (x + a)?,
            None => a,
        });
        sum_sq = Some(match sum_sq {
            Some(x) => (x + b)?,
            None => b,
        });
    }
    let (Some(sum), Some(sum_sq)) = (sum, sum_sq) else {
        bail!("no training sequences");
    };
    let mean = (sum / count as f64)?;
    let var = ((sum_sq / count as f64)? - mean.sqr()?)?.relu()?;
    let sd = var.sqrt()?;
    let floor = sd.max_all()?.to_scalar::<f64>()? * 1e-4 + 1e-12;
    let inv_sd = sd.clamp(floor, f64::MAX)?.recip()?;
    Ok((mean.to_dtype(DType::F32)?, inv_sd.to_dtype(DType::F32)?))
}

/// Numerically stable softplus of a tensor: relu(x) + log(1 + exp(−|x|)).
fn softplus(x: &Tensor) -> Result<Tensor> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok((x.relu()? + tail)?)
}

/// Pairs (i, j), i ≠ j, whose targets differ, with sign(π̂_i − π̂_j); up to `count`.
fn sample_pairs(target: &[f32], count: usize, rng: &mut impl Rng) -> Vec<(u32, u32, f32)> {
    let n = target.len();
    let mut pairs = Vec::with_capacity(count);
    if n < 2 {
        return pairs;
    }
    let mut tries = 0;
    while pairs.len() < count && tries < count * 4 {
        tries += 1;
        let i = rng.random_range(0..n);
        let j = rng.random_range(0..n);
        let d = target[i] - target[j];
        if i != j && d != 0.0 && d.is_finite() {
            pairs.push((i as u32, j as u32, d.signum()));
        }
    }
    pairs
}

/// Mean held-out Spearman of each stage's current predictions.
fn heldout_spearman(
    mlps: &[StageMlp],
    heldout: &[(Vec<Tensor>, &StoredSequence)],
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(mlps.len());
    for (k, mlp) in mlps.iter().enumerate() {
        let mut total = 0.0;
        let mut n = 0usize;
        for (hidden, seq) in heldout {
            let pred = mlp.forward(&hidden[k])?.to_vec1::<f32>()?;
            if let Some(rho) = spearman(&pred, &seq.stages[k].saliency) {
                total += rho;
                n += 1;
            }
        }
        out.push(if n > 0 { total / n as f64 } else { f64::NAN });
    }
    Ok(out)
}

/// Trains one MLP per stage (stage k of every sequence is layer `layers[k]`) on `train` and
/// early-stops on `heldout`. Both must be non-empty.
pub fn train(
    train: &[&StoredSequence],
    heldout: &[&StoredSequence],
    layers: &[usize],
    shape: PredictorShape,
    config: &TrainConfig,
    device: &Device,
    on_event: &mut dyn FnMut(TrainEvent),
) -> Result<Trained> {
    let hidden_size = shape.hidden_size;
    if train.is_empty() {
        bail!("the dataset has no train sequences; hold out fewer documents");
    }
    if heldout.is_empty() {
        bail!("the dataset has no held-out sequences; make it with --heldout-every above 0 and enough documents");
    }
    if hidden_size < 4 {
        bail!("hidden size {hidden_size} is too small for a hidden/4 predictor");
    }
    // Inputs as f32 rows once; targets normalised once.
    let rows = |set: &[&StoredSequence]| -> Result<Vec<Vec<Tensor>>> {
        set.iter()
            .map(|s| {
                s.stages
                    .iter()
                    .map(|st| {
                        stage_input(st, shape.inputs)?
                            .to_device(device)
                            .map_err(Into::into)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect()
    };
    let train_rows = rows(train)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
    let mut mlps = Vec::with_capacity(layers.len());
    for (k, &layer) in layers.iter().enumerate() {
        let (mean, inv_sd) = standardisation(&train_rows, k)?;
        mlps.push(StageMlp::new(
            layer,
            (shape.width(), hidden_size / 4),
            mean.to_device(device)?,
            inv_sd.to_device(device)?,
            &mut rng,
        )?);
    }
    let vars: Vec<Var> = mlps.iter().flat_map(StageMlp::vars).collect();
    let mut optimizer = AdamW::new(
        vars,
        ParamsAdamW {
            lr: config.learning_rate,
            weight_decay: config.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;
    let train_targets: Vec<Vec<Vec<f32>>> = train
        .iter()
        .map(|s| {
            s.stages
                .iter()
                .map(|st| normalised_ranks(&st.saliency))
                .collect()
        })
        .collect();
    let heldout_data: Vec<(Vec<Tensor>, &StoredSequence)> = rows(heldout)?
        .into_iter()
        .zip(heldout.iter().copied())
        .collect();

    let mut best: Vec<(f64, usize, StageWeights)> = mlps
        .iter()
        .map(|m| Ok((f64::NEG_INFINITY, 0, m.export()?)))
        .collect::<Result<_>>()?;
    let mut best_mean = f64::NEG_INFINITY;
    let mut since_best = 0;
    let mut history = Vec::new();
    let batch = config.batch_size.max(1);
    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 1..=config.max_epochs {
        let started = Instant::now();
        order.shuffle(&mut rng);
        let steps = order.len().div_ceil(batch);
        on_event(TrainEvent::EpochStart { epoch, steps });
        let (mut sum_loss, mut sum_mse, mut sum_rank) = (0.0, 0.0, 0.0);
        for chunk in order.chunks(batch) {
            let mut total: Option<Tensor> = None;
            let (mut step_mse, mut step_rank) = (0.0, 0.0);
            for (k, mlp) in mlps.iter().enumerate() {
                let x = Tensor::cat(
                    &chunk.iter().map(|&i| &train_rows[i][k]).collect::<Vec<_>>(),
                    0,
                )?;
                let pred = mlp.forward(&x)?;
                let mut targets = Vec::new();
                let (mut left, mut right, mut signs) = (Vec::new(), Vec::new(), Vec::new());
                let mut offset = 0u32;
                for &i in chunk {
                    let t = &train_targets[i][k];
                    targets.extend_from_slice(t);
                    let raw = &train[i].stages[k].saliency;
                    for (a, b, s) in sample_pairs(raw, config.pairs_per_sequence, &mut rng) {
                        left.push(offset + a);
                        right.push(offset + b);
                        signs.push(s);
                    }
                    offset += t.len() as u32;
                }
                let target = Tensor::new(targets.as_slice(), device)?;
                let mse = (&pred - &target)?.sqr()?.mean_all()?;
                let mut stage_loss = (&mse * config.mse_weight)?;
                step_mse += mse.to_scalar::<f32>()? as f64;
                if !signs.is_empty() && config.rank_weight > 0.0 {
                    let n = signs.len();
                    let left = Tensor::from_vec(left, n, device)?;
                    let right = Tensor::from_vec(right, n, device)?;
                    let signs = Tensor::from_vec(signs, n, device)?;
                    let diff = (pred.index_select(&left, 0)? - pred.index_select(&right, 0)?)?;
                    let rank = softplus(&(diff * signs)?.neg()?)?.mean_all()?;
                    step_rank += rank.to_scalar::<f32>()? as f64;
                    stage_loss = (stage_loss + (rank * config.rank_weight)?)?;
                }
                total = Some(match total {
                    Some(t) => (t + stage_loss)?,
                    None => stage_loss,
                });
            }
            let Some(total) = total else {
                bail!("no stages to train");
            };
            optimizer.backward_step(&total)?;
            let loss = total.to_scalar::<f32>()? as f64;
            sum_loss += loss;
            sum_mse += step_mse;
            sum_rank += step_rank;
            on_event(TrainEvent::Step { loss });
        }
        let per_stage = heldout_spearman(&mlps, &heldout_data)?;
        for (k, &rho) in per_stage.iter().enumerate() {
            if rho > best[k].0 {
                best[k] = (rho, epoch, mlps[k].export()?);
            }
        }
        let mean = per_stage.iter().sum::<f64>() / per_stage.len() as f64;
        let steps_f = steps.max(1) as f64;
        let log = EpochLog {
            epoch,
            train_loss: sum_loss / steps_f,
            train_mse: sum_mse / steps_f / mlps.len() as f64,
            train_rank: sum_rank / steps_f / mlps.len() as f64,
            heldout_spearman: per_stage,
            heldout_spearman_mean: mean,
            seconds: started.elapsed().as_secs_f64(),
        };
        on_event(TrainEvent::EpochEnd(&log));
        history.push(log);
        if mean > best_mean {
            best_mean = mean;
            since_best = 0;
        } else {
            since_best += 1;
            if since_best >= config.patience {
                break;
            }
        }
    }
    Ok(Trained {
        inputs: shape.inputs,
        best_epoch: best.iter().map(|b| b.1).collect(),
        stages: best.into_iter().map(|b| b.2).collect(),
        history,
    })
}

/// The predictor file's tensors: `layers.{L}.fc1.weight` etc., as `LearnedScorer` loads them.
pub fn predictor_tensors(stages: &[StageWeights]) -> Result<Vec<(String, RawTensor)>> {
    let mut out = Vec::new();
    for s in stages {
        for (name, t) in [
            ("fc1.weight", &s.fc1_weight),
            ("fc1.bias", &s.fc1_bias),
            ("fc2.weight", &s.fc2_weight),
            ("fc2.bias", &s.fc2_bias),
        ] {
            let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            out.push((
                format!("layers.{}.{name}", s.layer),
                RawTensor::f32(t.dims().to_vec(), &values),
            ));
        }
    }
    Ok(out)
}

/// Writes a predictor file with `metadata` (which must carry the model fingerprint and
/// layers keys that `LearnedScorer::check_file` reads).
pub fn save_predictor(
    path: &std::path::Path,
    stages: &[StageWeights],
    metadata: HashMap<String, String>,
) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    write_safetensors(path, &predictor_tensors(stages)?, metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_the_standardisation_keeps_the_scores() -> Result<()> {
        let dev = Device::Cpu;
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mean = Tensor::randn(0f32, 3.0, (1, 8), &dev)?;
        let inv_sd = (Tensor::rand(0.5f32, 2.0, (1, 8), &dev)?).recip()?;
        let mlp = StageMlp::new(3, (8, 2), mean, inv_sd, &mut rng)?;
        let x = Tensor::randn(0f32, 4.0, (5, 8), &dev)?;
        let want = mlp.forward(&x)?.to_vec1::<f32>()?;
        let got = mlp.export()?.score(&x)?;
        for (a, b) in want.iter().zip(&got) {
            assert!((a - b).abs() < 1e-4 * (1.0 + a.abs()), "{a} vs {b}");
        }
        Ok(())
    }

    #[test]
    fn tensor_softplus_matches_the_scalar_one() -> Result<()> {
        let xs = [-40.0f32, -1.0, 0.0, 2.5, 40.0];
        let t = softplus(&Tensor::new(&xs, &Device::Cpu)?)?.to_vec1::<f32>()?;
        for (x, y) in xs.iter().zip(t) {
            let want = super::super::metrics::softplus(*x as f64);
            assert!(
                (y as f64 - want).abs() < 1e-5 * (1.0 + want),
                "{x}: {y} vs {want}"
            );
        }
        Ok(())
    }

    #[test]
    fn targets_transform_saliency() {
        let s = [2.0, -3.0, 0.5];
        assert_eq!(SaliencyTarget::Signed.apply(&s), [2.0, -3.0, 0.5]);
        assert_eq!(SaliencyTarget::Negated.apply(&s), [-2.0, 3.0, -0.5]);
        assert_eq!(SaliencyTarget::Abs.apply(&s), [2.0, 3.0, 0.5]);
    }

    #[test]
    fn pairs_skip_ties_and_self_pairs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let pairs = sample_pairs(&[1.0, 1.0, 2.0], 50, &mut rng);
        assert!(!pairs.is_empty());
        for (i, j, s) in pairs {
            assert_ne!(i, j);
            assert!((i == 2) != (j == 2), "{i} {j}");
            assert_eq!(s, if i == 2 { 1.0 } else { -1.0 });
        }
        assert!(sample_pairs(&[3.0, 3.0], 10, &mut rng).is_empty());
    }
}
