//! Gradient-based token saliency of the frozen model, the SDTP training label:
//! π̂_t = Σ_d (∂L/∂h ⊙ h)_{t,d}, with L the mean next-token cross entropy of the sequence and
//! h the hidden state a pruning stage scores.
//!
//! Pruning happens *after* a stage's layer runs (see `prefill`), so h is the output of layer
//! `stage.layer`: the very tensor `ScoreInput::hidden` holds at inference. The label and the
//! predictor's training input are both taken from it, so training matches inference.
//!
//! All stages are labelled in one backward pass of the unpruned model. candle keeps the
//! gradients of variables only (intermediate nodes' gradients are dropped during backprop),
//! so each stage's output gets a zero [`Var`] added to it: h + 0 is h bit for bit, and
//! ∂L/∂(that var) is the total derivative ∂L/∂h through every later layer.
//!
//! The model runs its own layers ([`DecoderLayer::forward`]), switched to
//! [`Kernels::Differentiable`]; this module only needs every row's logits (prefill computes
//! the last row's alone), so it drives the layers itself rather than through
//! `prefill_with_pruning`.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, Var, D};

use crate::model::cache::KvCache;
use crate::model::llama::{DecoderLayer, Kernels, Llama};
use crate::prefill::check_prompt;

/// Which next-token predictions the loss L averages.
///
/// `All` is every row's prediction. Then a token's own next-token prediction dominates its
/// π̂ (h_t produces the prediction at t directly), so π̂ mostly says how much that position's
/// own output matters — which pruning never uses. `Last(m)` averages only the last m
/// predictions, so for every earlier token π̂ measures its value *as context* for the end of
/// the sequence, where inference continues. `sdtp saliency --loss tail` takes m = the
/// schedule's protected tail, whose tokens are never pruned anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossSpan {
    All,
    Last(usize),
}

impl LossSpan {
    /// (first row, rows) of the predictions averaged for a sequence of `len` tokens.
    fn rows(self, len: usize) -> (usize, usize) {
        let all = len - 1;
        match self {
            LossSpan::All => (0, all),
            LossSpan::Last(m) => {
                let m = m.clamp(1, all);
                (all - m, m)
            }
        }
    }

    /// `all` or `last:M`, as stored in a dataset's manifest.
    pub fn describe(self) -> String {
        match self {
            LossSpan::All => "all".to_string(),
            LossSpan::Last(m) => format!("last:{m}"),
        }
    }
}

/// The labels of one stage of one sequence.
pub struct StageLabels {
    pub layer: usize,
    /// Output of the stage's layer, (len, hidden) f32: what the predictor sees.
    pub hidden: Tensor,
    /// ∂L/∂h, (len, hidden) f32.
    pub grad: Tensor,
    /// π̂ = Σ_d (∂L/∂h ⊙ h), one value per token.
    pub saliency: Vec<f32>,
    /// The legacy `attention` scorer's score of each token at this stage (mean over heads
    /// of the attention the prompt's last queries pay it), for comparing scorers.
    pub attention: Vec<f32>,
    /// Per head, the mean attention the prompt's last queries pay each token, (heads, len)
    /// f32: what `ScoreInput::tail_attention` holds at inference, the learned scorer's
    /// question-aware input.
    pub heads: Tensor,
}

/// Labels of one sequence at every requested stage.
pub struct SequenceLabels {
    /// Mean next-token cross entropy, nats.
    pub loss: f32,
    pub stages: Vec<StageLabels>,
}

/// Checks a sequence and a stage list before any tensor is made.
fn check_inputs(model: &Llama, ids: &[u32], layers: &[usize]) -> Result<()> {
    check_prompt(model, ids.len())?;
    if ids.len() < 2 {
        bail!("saliency needs at least 2 tokens (the loss predicts each next token)");
    }
    let n = model.layers().len();
    if let Some(bad) = layers.iter().find(|&&l| l >= n) {
        bail!(
            "stage layer {bad} is outside the model (layers 0..={})",
            n.saturating_sub(1)
        );
    }
    if layers.windows(2).any(|w| w[0] >= w[1]) {
        bail!("stage layers {layers:?} are not strictly increasing");
    }
    Ok(())
}

/// Runs `ids` through the first `through` layers of `model` and returns the last one's
/// output. After each layer `l` listed in `layers` (which report the attention of their last
/// `tail_queries` queries), `at_stage(l, output, tail_attention)` may replace the layer's
/// output (to tap or perturb it).
fn run_layers(
    model: &Llama,
    ids: &[u32],
    layers: &[usize],
    tail_queries: Option<usize>,
    through: usize,
    mut at_stage: impl FnMut(usize, Tensor, Option<Tensor>) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut hidden = model.embed(ids)?;
    let positions = model.positions((0..ids.len() as u32).collect())?;
    let mut cache = KvCache::new(model.layers().len());
    let mut stages = layers.iter().peekable();
    for (index, layer) in model.layers().iter().enumerate().take(through) {
        let is_stage = stages.next_if(|&&l| l == index).is_some();
        let out = DecoderLayer::forward(
            layer,
            &hidden,
            &positions,
            model.rope(),
            &mut cache.layers[index],
            if is_stage { tail_queries } else { None },
        )?;
        hidden = if is_stage {
            at_stage(index, out.hidden, out.tail_attention)?
        } else {
            out.hidden
        };
    }
    Ok(hidden)
}

/// Runs the whole sequence through `model` (differentiable kernels) and returns the mean
/// next-token cross entropy over `span`; `layers`, `tail_queries` and `at_stage` as in
/// [`run_layers`].
fn sequence_loss(
    model: &Llama,
    ids: &[u32],
    span: LossSpan,
    layers: &[usize],
    tail_queries: Option<usize>,
    at_stage: impl FnMut(usize, Tensor, Option<Tensor>) -> Result<Tensor>,
) -> Result<Tensor> {
    if model.has_quantized_weights() {
        anyhow::bail!(
            "saliency needs gradients through the weights, which quantized matrices do not give; load the model with --weights dequantized"
        );
    }
    let model = model.clone().with_kernels(Kernels::Differentiable);
    let depth = model.layers().len();
    let hidden = run_layers(&model, ids, layers, tail_queries, depth, at_stage)?;
    let (first, rows) = span.rows(ids.len());
    let logits = model.logits(&hidden.narrow(1, first, rows)?)?;
    let targets = Tensor::new(&ids[first + 1..first + 1 + rows], model.device())?;
    Ok(candle_nn::loss::cross_entropy(&logits, &targets)?)
}

/// The per-head tail attention (heads, len) f32 of the last `tail_queries` queries of `ids`
/// at every layer of `layers`, from a forward pass of the model as inference runs it (up to
/// the last of those layers only).
fn stage_tail_attention(
    model: &Llama,
    ids: &[u32],
    layers: &[usize],
    tail_queries: usize,
) -> Result<Vec<Tensor>> {
    let mut out = Vec::with_capacity(layers.len());
    let through = layers.last().map_or(0, |&l| l + 1);
    run_layers(
        model,
        ids,
        layers,
        Some(tail_queries),
        through,
        |index, h, tail| {
            match tail {
                Some(t) => out.push(t.to_dtype(DType::F32)?),
                None => bail!("layer {index} returned no tail attention"),
            }
            Ok(h)
        },
    )?;
    Ok(out)
}

/// π̂ and the predictor's inputs at every layer of `layers` (strictly increasing) for the
/// first `prompt_len` tokens of `ids` (at least 2 tokens). The tokens after the prompt are
/// its answer: they feed the loss (`span`) but are never scored, as at inference, where the
/// prompt is pruned before any answer exists. `tail_queries` is how many of the prompt's
/// last queries the attention inputs average (`AttentionScoring::queries`).
pub fn sequence_saliency(
    model: &Llama,
    ids: &[u32],
    prompt_len: usize,
    span: LossSpan,
    layers: &[usize],
    tail_queries: usize,
) -> Result<SequenceLabels> {
    check_inputs(model, ids, layers)?;
    if prompt_len == 0 || prompt_len > ids.len() {
        bail!(
            "prompt of {prompt_len} tokens in a sequence of {}",
            ids.len()
        );
    }
    // With an answer after the prompt, the prompt's last queries are not the sequence's:
    // their attention comes from a pass over the prompt alone (causal, so the prompt's
    // hidden states are the same in both passes).
    let mut prompt_heads = if prompt_len < ids.len() {
        stage_tail_attention(model, &ids[..prompt_len], layers, tail_queries)?
    } else {
        Vec::new()
    }
    .into_iter();
    let whole = prompt_len == ids.len();
    let mut taps: Vec<(usize, Var, Tensor, Tensor)> = Vec::with_capacity(layers.len());
    let loss = sequence_loss(
        model,
        ids,
        span,
        layers,
        whole.then_some(tail_queries),
        |layer, h, tail| {
            let tap = Var::zeros(h.shape(), h.dtype(), h.device())?;
            let heads = match (tail, prompt_heads.next()) {
                (Some(t), _) | (None, Some(t)) => t.to_dtype(DType::F32)?,
                (None, None) => bail!("layer {layer} returned no tail attention"),
            };
            let tapped = (&h + tap.as_tensor())?;
            taps.push((layer, tap, h.detach(), heads));
            Ok(tapped)
        },
    )?;
    let forward_done = std::time::Instant::now();
    let grads = loss.backward()?;
    tracing::debug!(
        "saliency backward of {} tokens: {:.2} s",
        ids.len(),
        forward_done.elapsed().as_secs_f64()
    );
    let mut stages = Vec::with_capacity(taps.len());
    for (layer, tap, hidden, heads) in taps {
        let hidden = hidden.squeeze(0)?.to_dtype(DType::F32)?;
        let grad = match grads.get(tap.as_tensor()) {
            Some(g) => g.squeeze(0)?.to_dtype(DType::F32)?,
            // Nothing after this layer reaches the loss: impossible for a real model, but
            // then the gradient is exactly zero.
            None => hidden.zeros_like()?,
        };
        let (hidden, grad) = (
            hidden.narrow(0, 0, prompt_len)?,
            grad.narrow(0, 0, prompt_len)?,
        );
        let saliency = (&grad * &hidden)?.sum(D::Minus1)?.to_vec1::<f32>()?;
        let heads = match heads.rank() {
            1 => heads.unsqueeze(0)?,
            _ => heads,
        }
        .to_device(&candle_core::Device::Cpu)?;
        stages.push(StageLabels {
            layer,
            hidden,
            grad,
            saliency,
            // Stored as the mean over heads (the dataset's layout since version 1).
            attention: heads.mean(0)?.to_vec1::<f32>()?,
            heads,
        });
    }
    Ok(SequenceLabels {
        loss: loss.to_dtype(DType::F32)?.to_scalar::<f32>()?,
        stages,
    })
}

/// The loss of `ids` when `delta` (1, len, hidden) is added to the output of `layer`: the
/// reference that the gradient check differentiates by finite differences.
pub fn loss_with_delta(
    model: &Llama,
    ids: &[u32],
    span: LossSpan,
    layer: usize,
    delta: &Tensor,
) -> Result<f32> {
    check_inputs(model, ids, &[layer])?;
    let loss = sequence_loss(model, ids, span, &[layer], None, |_, h, _| Ok((h + delta)?))?;
    Ok(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::load::{load_model, ModelSource};
    use candle_core::Device;

    #[test]
    fn zero_delta_loss_equals_the_tapped_loss_and_bad_input_is_refused() {
        let tiny = load_model(
            &ModelSource::Synthetic("tiny".into()),
            &Device::Cpu,
            DType::F32,
            3,
        )
        .unwrap();
        let model = &tiny.model;
        let ids: Vec<u32> = (0..9).map(|i| (i * 37 + 11) % 256).collect();
        let labels = sequence_saliency(model, &ids, 9, LossSpan::All, &[1, 2], 1).unwrap();
        assert_eq!(labels.stages.len(), 2);
        assert_eq!(labels.stages[0].saliency.len(), 9);
        assert_eq!(labels.stages[1].attention.len(), 9);
        let hidden = model.config().hidden_size;
        assert_eq!(labels.stages[0].hidden.dims(), [9, hidden]);
        let zero = Tensor::zeros((1, 9, hidden), DType::F32, &Device::Cpu).unwrap();
        let plain = loss_with_delta(model, &ids, LossSpan::All, 1, &zero).unwrap();
        assert_eq!(plain, labels.loss);
        // The last token predicts nothing, and nothing after it reads its hidden state
        // except itself: its saliency comes only through its own row, which feeds no loss.
        assert_eq!(labels.stages[0].saliency[8], 0.0);
        assert!(sequence_saliency(model, &ids[..1], 1, LossSpan::All, &[1], 1).is_err());
        assert!(sequence_saliency(model, &ids, 10, LossSpan::All, &[1], 1).is_err());
        assert!(sequence_saliency(model, &ids, 9, LossSpan::All, &[2, 1], 1).is_err());
        assert!(sequence_saliency(model, &ids, 9, LossSpan::All, &[99], 1).is_err());
        // With an answer after a prompt of 6 tokens: the prompt's inputs are those of the
        // prompt alone (causal), and the answer is never scored.
        let answered = sequence_saliency(model, &ids, 6, LossSpan::Last(3), &[1, 2], 2).unwrap();
        let alone = sequence_saliency(model, &ids[..6], 6, LossSpan::All, &[1, 2], 2).unwrap();
        for (a, b) in answered.stages.iter().zip(&alone.stages) {
            assert_eq!(a.saliency.len(), 6);
            assert_eq!(a.heads.dims(), [model.config().num_attention_heads, 6]);
            let diff = |x: &Tensor, y: &Tensor| {
                (x - y)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            };
            assert!(diff(&a.heads, &b.heads) < 1e-6);
            assert!(diff(&a.hidden, &b.hidden) < 1e-5);
        }
        assert_eq!(LossSpan::Last(3).rows(9), (5, 3));
        assert_eq!(LossSpan::Last(30).rows(9), (0, 8));
        assert_eq!(LossSpan::All.rows(9), (0, 8));
    }
}
