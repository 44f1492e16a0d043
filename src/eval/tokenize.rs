//! What an eval feeds the model: prompts wrapped in the chat template or left raw, a JSONL
//! prompt set tokenized (`--max-tokens` and `--limit` applied, every prompt checked against
//! the model's vocabulary and context), and the text perplexity scores.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::agreement::TokenizedPrompt;
use super::prompts::load_prompts;
use super::report::{PromptSetInfo, TextInfo};
use crate::corpus::{shipped_text, SHIPPED_TEXT_PATH};
use crate::model::load::LoadedModel;
use crate::model::text::apply_chat_template;

/// How prompts are fed to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PromptFormat {
    /// Wrapped in the model's chat template as one user turn (raw when it has none).
    Chat,
    /// The text as is.
    Raw,
}

/// Turns a prompt's text into what is fed to the tokenizer.
pub type Wrap<'a> = Box<dyn Fn(&str) -> Result<String> + 'a>;

/// What turns a prompt's text into what is fed: the chat template, or the text as is.
/// Returns the wrapper and whether the template is used (a model without one runs raw).
pub fn prompt_wrapper(loaded: &LoadedModel, format: PromptFormat) -> (Wrap<'_>, bool) {
    match (format, loaded.chat_template.as_deref()) {
        (PromptFormat::Chat, Some(template)) => (
            Box::new(move |text: &str| {
                apply_chat_template(template, text, &loaded.bos_token, &loaded.eos_token)
            }),
            true,
        ),
        (PromptFormat::Chat, None) => {
            tracing::warn!("this model has no chat template; prompts are fed as raw text");
            (Box::new(|text: &str| Ok(text.to_string())), false)
        }
        (PromptFormat::Raw, _) => (Box::new(|text: &str| Ok(text.to_string())), false),
    }
}

/// Which prompts of a set run, and how they are fed.
#[derive(Debug, Clone, Copy)]
pub struct PromptSelection<'a> {
    /// A JSONL prompt set; `None`: the shipped default.
    pub prompts: Option<&'a Path>,
    /// Run only the first N prompts (after `max_tokens`).
    pub limit: Option<usize>,
    /// Skip prompts longer than this many tokens (chat template included).
    pub max_tokens: Option<usize>,
    pub format: PromptFormat,
}

/// The prompt set tokenized, filtered by `max_tokens` and cut to `limit`; each prompt must
/// leave room for `continuation_tokens` in the model's context.
pub fn tokenize_prompt_set(
    loaded: &LoadedModel,
    selection: &PromptSelection,
    continuation_tokens: usize,
) -> Result<(Vec<TokenizedPrompt>, PromptSetInfo)> {
    let (prompts, source) = load_prompts(selection.prompts)?;
    let (wrap, chat) = prompt_wrapper(loaded, selection.format);
    let context = loaded.model.config().max_position_embeddings;
    let vocab = loaded.model.config().vocab_size;
    let mut out = Vec::new();
    for p in &prompts {
        if selection.limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let ids = loaded.codec.encode(&wrap(&p.text)?)?;
        if ids.is_empty() {
            bail!("prompt {:?} encodes to no tokens", p.id);
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
            bail!(
                "prompt {:?} encodes to token {bad}, outside the model's vocabulary of {vocab}",
                p.id
            );
        }
        if selection.max_tokens.is_some_and(|m| ids.len() > m) {
            continue;
        }
        if ids.len() + continuation_tokens > context {
            bail!(
                "prompt {:?} has {} tokens; with {continuation_tokens} continuation tokens it is over the model's context of {context}; use --max-tokens",
                p.id,
                ids.len()
            );
        }
        out.push(TokenizedPrompt {
            id: p.id.clone(),
            ids,
        });
    }
    if out.is_empty() {
        bail!("no prompt of {source} is within --max-tokens");
    }
    let lens: Vec<usize> = out.iter().map(|p| p.ids.len()).collect();
    let info = PromptSetInfo {
        source,
        in_set: prompts.len(),
        run: out.len(),
        limit: selection.limit,
        max_tokens: selection.max_tokens,
        chat,
        tokens_min: lens.iter().copied().min().unwrap_or(0),
        tokens_max: lens.iter().copied().max().unwrap_or(0),
        tokens_mean: lens.iter().sum::<usize>() as f64 / lens.len() as f64,
    };
    Ok((out, info))
}

/// The text to score: the file at `path`, or the shipped book; with its source for the
/// report.
pub fn read_text(path: Option<&Path>) -> Result<(String, String)> {
    Ok(match path {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read text file {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (shipped_text()?, SHIPPED_TEXT_PATH.to_string()),
    })
}

/// `text` tokenized by `loaded`'s tokenizer, every id checked against its vocabulary; with
/// the report's description of it.
pub fn tokenize_text(
    loaded: &LoadedModel,
    text: &str,
    source: String,
) -> Result<(Vec<u32>, TextInfo)> {
    let ids = loaded.codec.encode(text)?;
    let vocab = loaded.model.config().vocab_size;
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        bail!("the text encodes to token {bad}, outside the model's vocabulary of {vocab}");
    }
    let info = TextInfo {
        source,
        tokens: ids.len(),
    };
    Ok((ids, info))
}
