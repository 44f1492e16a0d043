//! Prompts of exactly N tokens cut from a natural-language text shipped in the repo
//! (`data/text/eighty_days.jsonl`: Jules Verne, *Around the World in Eighty Days*, public
//! domain; see data/README.md), so benchmarks run on real prose rather than a repeated phrase.
//!
//! The book is encoded once; a prompt is its first N ids. When N exceeds the book's length in
//! tokens (≈ 80K tokens with SmolLM2's tokenizer, ≈ 370K with the byte codec of synthetic
//! models) the id sequence is repeated from the start, and [`ExactPrompt::tiled`] says so.

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::model::text::TextCodec;

/// The shipped text, one JSON object per line: `{"id", "title", "text"}`.
pub const SHIPPED_TEXT_JSONL: &str = include_str!("../../data/text/eighty_days.jsonl");

/// Where the shipped text lives in the repository, for reports.
pub const SHIPPED_TEXT_PATH: &str = "data/text/eighty_days.jsonl";

/// One document (a chapter) of a JSONL text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Document {
    pub id: String,
    pub title: String,
    pub text: String,
}

/// Parses a JSONL text; blank lines are skipped. Errors name the line.
pub fn parse_documents(jsonl: &str) -> Result<Vec<Document>> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("text line {} is not a document", i + 1))
        })
        .collect()
}

/// The documents of the shipped text, in reading order.
pub fn shipped_documents() -> Result<Vec<Document>> {
    parse_documents(SHIPPED_TEXT_JSONL).context(SHIPPED_TEXT_PATH)
}

/// The shipped text as one string: the documents' texts joined by blank lines.
pub fn shipped_text() -> Result<String> {
    Ok(shipped_documents()?
        .into_iter()
        .map(|d| d.text)
        .collect::<Vec<_>>()
        .join("\n\n"))
}

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
    fn shipped_text_is_a_long_natural_text() {
        let docs = shipped_documents().unwrap();
        assert_eq!(docs.len(), 37, "37 chapters");
        assert!(docs[0].text.starts_with("Mr. Phileas Fogg lived, in 1872"));
        let words: usize = docs.iter().map(|d| d.text.split_whitespace().count()).sum();
        assert!(words > 60_000, "{words} words");
        let mut ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
        ids.dedup();
        assert_eq!(ids.len(), docs.len(), "ids are unique");
    }

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

    #[test]
    fn bad_lines_are_named() {
        let err = parse_documents("{\"id\":\"a\",\"title\":\"t\",\"text\":\"x\"}\n\nnot json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
    }
}
