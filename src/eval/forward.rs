//! The model runs the evaluations need, all through the library's one forward path
//! (`prefill_with_pruning`, `generate`, `DecoderLayer::forward`): a pruned or unpruned
//! prefill with a per-unit scorer seed, a greedy continuation, and teacher-forced logits of
//! a known continuation fed after a prefill.

use anyhow::{bail, Result};

use crate::generate::{generate, SamplingConfig};
use crate::model::cache::KvCache;
use crate::model::llama::Llama;
use crate::prefill::{prefill_with_pruning, PrefillOptions, PrefillOutput};
use crate::prune::schedule::PruneSchedule;
use crate::prune::scorer::build_scorer;

/// Tokens fed per forward by [`teacher_forced_logits`]: bounds the (tokens × vocab) logits
/// buffer while keeping the matmuls efficient.
pub const TEACHER_FORCING_CHUNK: usize = 64;

/// Prefills `ids` under `schedule` with a scorer seeded by `seed` (only the random scorer
/// uses it).
pub fn prefill(
    model: &Llama,
    ids: &[u32],
    schedule: &PruneSchedule,
    seed: u64,
) -> Result<PrefillOutput> {
    let mut scorer = build_scorer(schedule, model.config(), model.device(), seed)?;
    prefill_with_pruning(
        model,
        ids,
        schedule,
        scorer.as_mut(),
        &PrefillOptions::default(),
    )
}

/// The last prompt token's logits as a vector (one per vocabulary entry).
pub fn last_logits(prefill: &PrefillOutput) -> Result<Vec<f32>> {
    Ok(prefill.last_logits.to_vec1::<f32>()?)
}

/// Up to `max_tokens` greedy tokens after `ids`, stopping at an end-of-sequence id (which
/// is included) or when the context is full.
pub fn greedy_continuation(
    model: &Llama,
    ids: &[u32],
    prefill: PrefillOutput,
    max_tokens: usize,
    eos_token_ids: &[u32],
) -> Result<Vec<u32>> {
    if max_tokens == 0 {
        return Ok(Vec::new());
    }
    let greedy = SamplingConfig::default();
    Ok(generate(
        model,
        ids,
        prefill,
        &greedy,
        max_tokens,
        eos_token_ids,
        |_| Ok(()),
    )?
    .tokens)
}

/// Feeds `tokens` after everything in `cache`, the first at position `start`, and returns one
/// row of logits per token (row i is the distribution of the token after `tokens[i]`).
/// Mathematically the same as a `decode_step` per token (teacher forcing); it runs
/// [`TEACHER_FORCING_CHUNK`] tokens per forward through the same layers. Appends to `cache`.
pub fn teacher_forced_logits(
    model: &Llama,
    cache: &mut KvCache,
    tokens: &[u32],
    start: usize,
) -> Result<Vec<Vec<f32>>> {
    let max = model.config().max_position_embeddings;
    if start + tokens.len() > max {
        bail!(
            "{} tokens after position {start} do not fit the model's context of {max}",
            tokens.len()
        );
    }
    let mut rows = Vec::with_capacity(tokens.len());
    for (c, chunk) in tokens.chunks(TEACHER_FORCING_CHUNK).enumerate() {
        let first = (start + c * TEACHER_FORCING_CHUNK) as u32;
        let positions = model.positions((first..first + chunk.len() as u32).collect())?;
        let mut hidden = model.embed(chunk)?;
        for (layer, layer_cache) in model.layers().iter().zip(cache.layers.iter_mut()) {
            hidden = layer
                .forward(&hidden, &positions, model.rope(), layer_cache, None)?
                .hidden;
        }
        rows.extend(model.logits(&hidden)?.to_vec2::<f32>()?);
    }
    Ok(rows)
}
