//! Text as documents: the one JSONL document parser, and the natural-language text shipped in
//! the repo (`data/text/eighty_days.jsonl`: Jules Verne, *Around the World in Eighty Days*,
//! public domain; see data/README.md) that `profile` cuts prompts from, `eval` builds its
//! prompts and haystacks from, and `train` uses as its default corpus.

use anyhow::{bail, Result};
use serde::Deserialize;

/// The shipped text, one JSON object per line: `{"id", "title", "text"}`.
pub const SHIPPED_TEXT_JSONL: &str = include_str!("../data/text/eighty_days.jsonl");

/// Where the shipped text lives in the repository, for reports and as a default path.
pub const SHIPPED_TEXT_PATH: &str = "data/text/eighty_days.jsonl";

/// One document (a chapter) of a JSONL text.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: String,
    pub text: String,
}

#[derive(Deserialize)]
struct JsonDocument {
    #[serde(default)]
    id: Option<String>,
    text: String,
}

/// Parses JSONL documents, one `{"id": …, "text": …}` object per non-blank line (`id`
/// defaults to `line-N`; other keys such as `title` are ignored). Errors name `origin` and
/// the line; ids must be unique.
pub fn parse_documents(text: &str, origin: &str) -> Result<Vec<Document>> {
    let mut documents: Vec<Document> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let doc: JsonDocument = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!(
                "corpus {origin} line {}: not a document (want {{\"id\": …, \"text\": …}}): {e}",
                i + 1
            )
        })?;
        let id = doc.id.unwrap_or_else(|| format!("line-{}", i + 1));
        if documents.iter().any(|d| d.id == id) {
            bail!(
                "corpus {origin} line {}: document id {id:?} appears twice; ids must be unique",
                i + 1
            );
        }
        documents.push(Document { id, text: doc.text });
    }
    Ok(documents)
}

/// The documents of the shipped text, in reading order.
pub fn shipped_documents() -> Result<Vec<Document>> {
    parse_documents(SHIPPED_TEXT_JSONL, SHIPPED_TEXT_PATH)
}

/// The shipped text as one string: the documents' texts joined by blank lines.
pub fn shipped_text() -> Result<String> {
    Ok(shipped_documents()?
        .into_iter()
        .map(|d| d.text)
        .collect::<Vec<_>>()
        .join("\n\n"))
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
    fn jsonl_parsing_and_errors() {
        let docs = parse_documents(
            "{\"id\": \"x\", \"text\": \"hello\", \"title\": \"t\"}\n\n{\"text\": \"bye\"}\n",
            "c.jsonl",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].id, "line-3");
        let e = parse_documents("{\"id\": \"x\"}", "c.jsonl").unwrap_err();
        assert!(e.to_string().starts_with("corpus c.jsonl line 1:"), "{e}");
        let e = parse_documents(
            "{\"id\": \"x\", \"text\": \"a\"}\n{\"id\": \"x\", \"text\": \"b\"}",
            "c.jsonl",
        )
        .unwrap_err();
        assert!(e.to_string().contains("appears twice"), "{e}");
        let e = parse_documents(
            "{\"id\":\"a\",\"title\":\"t\",\"text\":\"x\"}\n\nnot json",
            "t",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("line 3"), "{e}");
    }
}
