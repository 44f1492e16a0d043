//! Prompts of exactly N tokens cut from the natural-language text shipped in the repo
//! (`crate::corpus`), so benchmarks run on real prose rather than a repeated phrase.
//!
//! The book is encoded once; a prompt is its first N ids. When N exceeds the book's length in
//! tokens (≈ 80K tokens with SmolLM2's tokenizer, ≈ 370K with the byte codec of synthetic
//! models) the id sequence is repeated from the start, and [`ExactPrompt::tiled`] says so.

use anyhow::{bail, Result};

use crate::corpus::shipped_text;
use crate::model::text::TextCodec;

/// A prompt of exactly the asked length.
#[derive(Debug, Clone, PartialEq)]
pub struct ExactPrompt {
    pub ids: Vec<u32>,
    /// The source ran out and its ids were repeated.
    pub tiled: bool,
}

/// Token ids of a text, encoded once, from which prompts of any length are cut.
#[derive(Debug, Clone)]
pub struct PromptSource {
    ids: Vec<u32>,
}

impl PromptSource {
    /// Encodes the shipped text with `codec`; every id must be below `vocab_size`.
    pub fn shipped(codec: &TextCodec, vocab_size: usize) -> Result<Self> {
        Self::from_text(&shipped_text()?, codec, vocab_size)
    }

    /// Encodes `text` with `codec`; every id must be below `vocab_size`.
    pub fn from_text(text: &str, codec: &TextCodec, vocab_size: usize) -> Result<Self> {
        let ids = codec.encode(text)?;
        if ids.is_empty() {
            bail!("the prompt text encodes to no tokens");
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab_size) {
            bail!("the prompt text encodes to token {bad}, outside the model's vocabulary of {vocab_size}");
        }
        Ok(Self { ids })
    }

    /// Length of the encoded text before any repetition.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The first `n` ids, repeating the text when it is shorter than `n`.
    pub fn take(&self, n: usize) -> ExactPrompt {
        ExactPrompt {
            ids: self.ids.iter().copied().cycle().take(n).collect(),
            tiled: n > self.ids.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_have_exactly_the_asked_length() {
        let source = PromptSource::shipped(&TextCodec::Bytes, 256).unwrap();
        assert!(source.len() > 300_000);
        for n in [1, 2, 1000, 1024, 4096] {
            let p = source.take(n);
            assert_eq!(p.ids.len(), n);
            assert!(!p.tiled);
        }
        assert_eq!(&source.take(4).ids, &[u32::from(b'M'), 114, 46, 32]);
    }

    #[test]
    fn short_texts_are_tiled() {
        let source = PromptSource::from_text("abc", &TextCodec::Bytes, 256).unwrap();
        let p = source.take(7);
        assert_eq!(p.ids, vec![97, 98, 99, 97, 98, 99, 97]);
        assert!(p.tiled);
    }

    #[test]
    fn ids_outside_the_vocabulary_are_an_error() {
        let err = PromptSource::from_text("z", &TextCodec::Bytes, 100)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("outside the model's vocabulary of 100"),
            "{err}"
        );
        assert!(PromptSource::from_text("", &TextCodec::Bytes, 256).is_err());
    }
}
