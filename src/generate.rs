//! The decode loop over a `PrefillOutput`: sampling, and one token at a time through every
//! layer's cache, continuing positions from the original (unpruned) prompt length.

use std::time::Instant;

use anyhow::Result;
use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};

use crate::device::synchronize;
use crate::model::cache::KvCache;
use crate::model::llama::Llama;
use crate::prefill::PrefillOutput;
use crate::resident_decode::{DecodePath, ResidentDecoder, StepOutput};

/// How the next token is picked. `temperature <= 0` is greedy (arg max).
#[derive(Debug, Clone)]
pub struct SamplingConfig {
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: 299_792_458,
        }
    }
}

impl SamplingConfig {
    /// Checks the settings a user gives (`--temperature`, `--top-p`, `--top-k`): candle's
    /// sampler would take a top-p above 1 or a top-k of 0 without a word and sample from
    /// something other than what was asked.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            anyhow::bail!(
                "--temperature {} is not a temperature; use 0 (greedy) or a positive number",
                self.temperature
            );
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                anyhow::bail!("--top-p {p} is outside (0, 1]; use e.g. --top-p 0.9");
            }
        }
        if self.top_k == Some(0) {
            anyhow::bail!("--top-k 0 keeps no token; use 1 or more, or leave it out");
        }
        Ok(())
    }

    fn processor(&self) -> LogitsProcessor {
        let sampling = if self.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            let temperature = self.temperature;
            match (self.top_k, self.top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
            }
        };
        LogitsProcessor::from_sampling(self.seed, sampling)
    }
}

#[derive(Debug, Clone)]
pub struct DecodeOutput {
    pub tokens: Vec<u32>,
    /// Wall time of the decode steps (device synchronised), excluding the prefill.
    pub decode_secs: f64,
    pub stopped_at_eos: bool,
    /// Generation stopped because the model's context was full.
    pub stopped_at_context: bool,
    /// How the decode steps ran (host-side lengths, device-resident, or a CUDA graph).
    pub path: DecodePath,
}

/// Generates up to `max_new_tokens` after `input_ids`, starting from `prefill` (which must be
/// the prefill of exactly `input_ids`). Each token is handed to `on_token` as it is made.
pub fn generate(
    model: &Llama,
    input_ids: &[u32],
    prefill: PrefillOutput,
    sampling: &SamplingConfig,
    max_new_tokens: usize,
    eos_token_ids: &[u32],
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<DecodeOutput> {
    if prefill.prompt_len != input_ids.len() {
        anyhow::bail!(
            "decode got {} input ids but the prefill was of {} tokens",
            input_ids.len(),
            prefill.prompt_len
        );
    }
    let mut processor = sampling.processor();
    let mut cache = prefill.cache;
    let max_positions = model.config().max_position_embeddings;
    // Every step this call may run: the first token comes from the prefill's logits.
    let steps = max_new_tokens
        .saturating_sub(1)
        .min(max_positions.saturating_sub(input_ids.len()));
    let greedy = sampling.temperature <= 0.0;
    // Set up at the first decode step, once the first token is out: reserving room in the
    // caches copies them once, which the time to first token need not wait for.
    let mut resident: Option<Option<ResidentDecoder>> = None;
    let mut tokens = Vec::with_capacity(max_new_tokens);
    let (mut stopped_at_eos, mut stopped_at_context) = (false, false);
    synchronize(model.device())?;
    let started = Instant::now();
    let mut next = match max_new_tokens {
        0 => None,
        _ => Some(processor.sample(&prefill.last_logits)?),
    };
    while let Some(next_token) = next.take() {
        tokens.push(next_token);
        on_token(next_token)?;
        if eos_token_ids.contains(&next_token) {
            stopped_at_eos = true;
            break;
        }
        if tokens.len() >= max_new_tokens {
            break;
        }
        // The sampled token sits right after everything before it: the original prompt
        // length, never the pruned one.
        let position = input_ids.len() + tokens.len() - 1;
        if position >= max_positions {
            stopped_at_context = true;
            break;
        }
        let position = position as u32;
        if resident.is_none() {
            resident = Some(ResidentDecoder::new(model, &mut cache, steps, greedy)?);
        }
        next = Some(match resident.as_mut().and_then(Option::as_mut) {
            Some(decoder) => match decoder.step(model, &mut cache, next_token, position)? {
                StepOutput::Token(token) => token,
                StepOutput::Logits(logits) => processor.sample(&logits)?,
            },
            None => processor.sample(&decode_step(model, next_token, position, &mut cache)?)?,
        });
    }
    synchronize(model.device())?;
    Ok(DecodeOutput {
        tokens,
        decode_secs: started.elapsed().as_secs_f64(),
        stopped_at_eos,
        stopped_at_context,
        path: resident.flatten().map_or(DecodePath::Host, |d| d.path()),
    })
}

/// Runs one token at `position` through every layer, appending to each layer's cache, and
/// returns its logits (vocab,) f32.
pub fn decode_step(
    model: &Llama,
    token: u32,
    position: u32,
    cache: &mut KvCache,
) -> Result<Tensor> {
    let mut hidden = model.embed(&[token])?;
    let positions = model.positions(vec![position])?;
    for (layer, layer_cache) in model.layers().iter().zip(cache.layers.iter_mut()) {
        hidden = layer
            .forward(&hidden, &positions, model.rope(), layer_cache, None)?
            .hidden;
    }
    Ok(model.last_logits(&hidden)?)
}
