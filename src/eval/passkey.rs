//! Synthetic passkey retrieval in the format of llama.cpp's `examples/passkey`: a 5-digit key
//! hidden at a chosen depth in repeated filler, asked for at the end. No dataset needed.
//!
//! The prompt (before any chat template):
//!
//! ```text
//! There is an important info hidden inside a lot of irrelevant text. Find it and memorize
//! them. I will quiz you about the important information there. The grass is green. … [the
//! filler, `n` times, with " The pass key is 12345. Remember it. 12345 is the pass key."
//! inserted before filler unit i] … What is the pass key? The pass key is
//! ```
//!
//! `n` is the most filler units that keep the prompt (template included) within the asked
//! length, and `i` puts the key's first token as near as whole filler units allow to
//! `depth × length`: depth 0 is right after the instructions, depth 1 before the last filler
//! unit (as in llama.cpp, where the key is always followed by at least one filler unit).

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::evidence::{evidence_tokens, share_by_stage};
use super::forward::{greedy_continuation, prefill};
use crate::model::llama::Llama;
use crate::model::text::TextCodec;
use crate::prune::schedule::PruneSchedule;
use crate::report::{derive_seed, Contender, BASELINE};

/// The instructions that open the prompt (llama.cpp's `prompt_prefix`).
pub const PREFIX: &str = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.";

/// One filler unit (llama.cpp's `prompt_junk`).
pub const FILLER: &str =
    " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

/// The question that closes the prompt (llama.cpp's `prompt_suffix`).
pub const SUFFIX: &str = " What is the pass key? The pass key is";

/// The sentence that hides `key`.
pub fn key_sentence(key: &str) -> String {
    format!(" The pass key is {key}. Remember it. {key} is the pass key.")
}

/// The raw prompt text with `units` filler units and the key before unit `key_unit`
/// (`key_unit == units` puts it after the last one).
pub fn passkey_text(key: &str, units: usize, key_unit: usize) -> String {
    let mut text = String::with_capacity(PREFIX.len() + (units + 2) * FILLER.len());
    text.push_str(PREFIX);
    for i in 0..=units {
        if i == key_unit {
            text.push_str(&key_sentence(key));
        }
        if i < units {
            text.push_str(FILLER);
        }
    }
    text.push_str(SUFFIX);
    text
}

/// A built passkey prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct PasskeyPrompt {
    /// The 5-digit key.
    pub key: String,
    /// The text fed to the tokenizer (chat template applied, when asked).
    pub text: String,
    pub ids: Vec<u32>,
    pub filler_units: usize,
    /// The key sentence comes before this filler unit.
    pub key_unit: usize,
    /// Index of the key sentence's first token in `ids`.
    pub key_position: usize,
}

impl PasskeyPrompt {
    /// Where the key sits: `key_position / ids.len()`.
    pub fn depth(&self) -> f64 {
        self.key_position as f64 / self.ids.len().max(1) as f64
    }
}

/// Whether a model's answer gives the key: the five digits appear together in it.
pub fn answer_is_correct(answer: &str, key: &str) -> bool {
    answer.contains(key)
}

/// Builds the prompt of at most `length` tokens with `key` at `depth` (0..=1). `encode`
/// tokenizes; `wrap` turns the raw text into what is fed (identity, or a chat template).
pub fn build_passkey_prompt(
    key: &str,
    length: usize,
    depth: f64,
    encode: &dyn Fn(&str) -> Result<Vec<u32>>,
    wrap: &dyn Fn(&str) -> Result<String>,
) -> Result<PasskeyPrompt> {
    if !(0.0..=1.0).contains(&depth) {
        bail!("passkey depth {depth} is outside [0, 1]");
    }
    let tokens = |units: usize, key_unit: usize| -> Result<usize> {
        Ok(encode(&wrap(&passkey_text(key, units, key_unit))?)?.len())
    };
    let bare = tokens(0, 0)?;
    if bare > length {
        bail!("a passkey prompt needs at least {bare} tokens; use a --length of {bare} or more");
    }
    // Tokens per filler unit, measured over many units so the joins average out.
    let probe = 64;
    let per_unit = (tokens(probe, 0)? - bare) as f64 / probe as f64;
    let mut units = ((length - bare) as f64 / per_unit).floor() as usize;
    while units > 0 && tokens(units, 0)? > length {
        units -= 1;
    }
    while tokens(units + 1, 0)? <= length {
        units += 1;
    }

    // The key's first token lands at about (instructions + key_unit · per_unit): pick the
    // unit that brings it nearest depth × the prompt's length.
    let prompt = |key_unit: usize| -> Result<PasskeyPrompt> {
        let text = wrap(&passkey_text(key, units, key_unit))?;
        let ids = encode(&text)?;
        let sentence = key_sentence(key);
        let Some(offset) = text.find(&sentence) else {
            bail!("the chat template dropped the passkey sentence");
        };
        let key_position = encode(&text[..offset])?.len();
        Ok(PasskeyPrompt {
            key: key.to_string(),
            text,
            ids,
            filler_units: units,
            key_unit,
            key_position,
        })
    };
    let at_start = prompt(0)?;
    let total = at_start.ids.len() as f64;
    let wanted = depth * total;
    let guess = ((wanted - at_start.key_position as f64) / per_unit).round();
    // As in llama.cpp, at least one filler unit follows the key (when there is one), so the
    // key sentence never runs straight into the question.
    let last = units.saturating_sub(1);
    let key_unit = guess.clamp(0.0, last as f64) as usize;
    let built = if key_unit == 0 {
        at_start
    } else {
        prompt(key_unit)?
    };
    if built.ids.len() > length {
        bail!(
            "the passkey prompt came out at {} tokens, over the asked {length}",
            built.ids.len()
        );
    }
    Ok(built)
}

/// What a passkey run covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyConfig {
    /// Prompt lengths in tokens (each prompt is at most this long).
    pub lengths: Vec<usize>,
    /// Depths of the key in [0, 1].
    pub depths: Vec<f64>,
    /// Keys (prompts) per (length, depth) cell.
    pub trials: usize,
    /// Greedy tokens generated for the answer.
    pub new_tokens: usize,
    /// Whether the prompt went through the model's chat template.
    pub chat: bool,
    #[serde(skip)]
    pub eos_token_ids: Vec<u32>,
    pub seed: u64,
}

/// One key under one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyRow {
    pub length: usize,
    pub depth: f64,
    pub trial: usize,
    pub mode: String,
    pub key: String,
    pub prompt_tokens: usize,
    /// Index of the key sentence's first token, and that over prompt_tokens.
    pub key_position: usize,
    pub key_depth: f64,
    /// Tokens that reached the last layer.
    pub final_tokens: usize,
    /// Share of the key's tokens (each occurrence of the five digits) kept after each
    /// pruning stage, `[layer, share]` in stage order: where a lost key was dropped (empty
    /// for the baseline).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_by_stage: Vec<(usize, f64)>,
    pub answer: String,
    pub correct: bool,
}

/// Accuracy of one mode in one (length, depth) cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyCell {
    pub length: usize,
    pub depth: f64,
    pub mode: String,
    pub trials: usize,
    pub correct: usize,
    pub accuracy: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasskeyResults {
    pub rows: Vec<PasskeyRow>,
    /// Lengths in the order asked, then depths, then the baseline and each contender.
    pub cells: Vec<PasskeyCell>,
}

/// Identifies a depth in seeds (millionths).
fn depth_code(depth: f64) -> u64 {
    (depth * 1e6).round() as u64
}

/// The key of trial `trial` in cell (`length`, `depth`): five digits, 10000..=99999, from
/// the run's seed and the cell alone (the same cell gets the same keys in any run).
pub fn trial_key(seed: u64, length: usize, depth: f64, trial: usize) -> String {
    let mut rng = rand::rngs::StdRng::seed_from_u64(derive_seed(
        seed,
        &[length as u64, depth_code(depth), trial as u64],
    ));
    rng.random_range(10_000u32..=99_999).to_string()
}

/// Runs every (length, depth, trial) prompt through the baseline and each contender, and
/// greedy-decodes the answer. `wrap` is applied to the raw prompt text (chat template or
/// identity); `progress` hears (cells done, cells).
pub fn run_passkey(
    model: &Llama,
    codec: &TextCodec,
    wrap: &dyn Fn(&str) -> Result<String>,
    contenders: &[Contender],
    config: &PasskeyConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PasskeyResults> {
    let encode = |text: &str| codec.encode(text);
    let none = PruneSchedule::none();
    let modes: Vec<(&str, &PruneSchedule)> = std::iter::once((BASELINE, &none))
        .chain(contenders.iter().map(|c| (c.mode(), &c.schedule)))
        .collect();
    let max = model.config().max_position_embeddings;
    let mut rows = Vec::new();
    let mut cells = Vec::new();
    let total = config.lengths.len() * config.depths.len();
    for (li, &length) in config.lengths.iter().enumerate() {
        if length + config.new_tokens > max + 1 {
            bail!(
                "--length {length} with {} new tokens is over the model's context of {max}",
                config.new_tokens
            );
        }
        for (di, &depth) in config.depths.iter().enumerate() {
            let cell = [length as u64, depth_code(depth)];
            progress(li * config.depths.len() + di, total);
            let mut correct = vec![0usize; modes.len()];
            for trial in 0..config.trials {
                let key = trial_key(config.seed, length, depth, trial);
                let prompt = build_passkey_prompt(&key, length, depth, &encode, wrap)?;
                let seed = derive_seed(config.seed, &[cell[0], cell[1], trial as u64, 1]);
                let evidence = evidence_tokens(codec, &prompt.text, std::slice::from_ref(&key))?;
                for (m, (mode, schedule)) in modes.iter().enumerate() {
                    let out = prefill(model, &prompt.ids, schedule, seed)?;
                    let final_tokens = out.final_len();
                    let key_by_stage = share_by_stage(&evidence, &out.kept);
                    let tokens = greedy_continuation(
                        model,
                        &prompt.ids,
                        out,
                        config.new_tokens,
                        &config.eos_token_ids,
                    )?;
                    let answer = codec.decode(&tokens)?;
                    let ok = answer_is_correct(&answer, &key);
                    correct[m] += usize::from(ok);
                    rows.push(PasskeyRow {
                        length,
                        depth,
                        trial,
                        mode: mode.to_string(),
                        key: key.clone(),
                        prompt_tokens: prompt.ids.len(),
                        key_position: prompt.key_position,
                        key_depth: prompt.depth(),
                        final_tokens,
                        key_by_stage,
                        answer,
                        correct: ok,
                    });
                }
            }
            for (m, (mode, _)) in modes.iter().enumerate() {
                cells.push(PasskeyCell {
                    length,
                    depth,
                    mode: mode.to_string(),
                    trials: config.trials,
                    correct: correct[m],
                    accuracy: correct[m] as f64 / config.trials.max(1) as f64,
                });
            }
        }
    }
    Ok(PasskeyResults { rows, cells })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Result<Vec<u32>> {
        Ok(text.bytes().map(u32::from).collect())
    }

    fn raw(text: &str) -> Result<String> {
        Ok(text.to_string())
    }

    #[test]
    fn text_follows_llama_cpp() {
        let text = passkey_text("12345", 2, 1);
        assert_eq!(
            text,
            format!("{PREFIX}{FILLER} The pass key is 12345. Remember it. 12345 is the pass key.{FILLER}{SUFFIX}")
        );
        assert!(passkey_text("1", 0, 0).starts_with(PREFIX));
        assert!(passkey_text("54321", 3, 3)
            .ends_with(&format!("{FILLER}{}{SUFFIX}", key_sentence("54321"))));
    }

    #[test]
    fn key_lands_at_the_asked_depth() {
        for length in [1024, 4096] {
            // One filler unit is 89 bytes: the resolution of the depth.
            let unit = FILLER.len() as f64 / length as f64;
            for depth in [0.25, 0.5, 0.75] {
                let p = build_passkey_prompt("90210", length, depth, &bytes, &raw).unwrap();
                assert!(p.ids.len() <= length && p.ids.len() + FILLER.len() > length);
                let found = p.depth();
                assert!((found - depth).abs() <= unit, "{length} {depth}: {found}");
                assert!(p.text[p.key_position..].starts_with(" The pass key is 90210."));
            }
            // The ends: right after the instructions, and before the last filler unit.
            let first = build_passkey_prompt("90210", length, 0.0, &bytes, &raw).unwrap();
            assert_eq!(first.key_unit, 0);
            assert_eq!(first.key_position, PREFIX.len());
            let last = build_passkey_prompt("90210", length, 1.0, &bytes, &raw).unwrap();
            assert_eq!(last.key_unit, last.filler_units - 1);
            assert!(last.text.ends_with(&format!("{FILLER}{SUFFIX}")));
        }
    }

    #[test]
    fn too_short_is_an_error_and_answers_are_checked() {
        assert_eq!(trial_key(3, 1024, 0.5, 0), trial_key(3, 1024, 0.5, 0));
        assert_ne!(trial_key(3, 1024, 0.5, 0), trial_key(3, 1024, 0.5, 1));
        assert_eq!(trial_key(3, 1024, 0.0, 1).len(), 5);
        let err = build_passkey_prompt("12345", 50, 0.5, &bytes, &raw)
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least"), "{err}");
        assert!(build_passkey_prompt("12345", 4096, 1.5, &bytes, &raw).is_err());
        assert!(answer_is_correct(" 12345. Remember it.", "12345"));
        assert!(!answer_is_correct(" 1234 5", "12345"));
    }
}
