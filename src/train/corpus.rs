//! The training corpus: documents from a JSONL file (`{"id", "text"}` per line, like the
//! shipped text; parsed by `crate::corpus`) or a plain-text file (one document), split into
//! train and held-out **by document**, and cut into fixed-length token windows.
//!
//! Everything here is pure apart from reading the file, so the split and the windows are
//! tested without a model.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::corpus::{parse_documents, Document, SHIPPED_TEXT_PATH};

/// Which side of the split a document (and every window cut from it) is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Heldout,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Heldout => "heldout",
        }
    }
}

/// A loaded corpus with what identifies it in a dataset's provenance.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub documents: Vec<Document>,
    /// FNV-1a 64 of the file's bytes, hex: a changed corpus is noticed on resume.
    pub digest: String,
}

/// Reads a corpus file. `.jsonl`: one `{"id": …, "text": …}` object per non-blank line (`id`
/// defaults to `line-N`; other keys are ignored); anything else: the whole file is one
/// document named after the file. Missing, unreadable, malformed or empty corpora are
/// one-line errors that name the file.
pub fn load_corpus(path: &Path) -> Result<Corpus> {
    if !path.exists() {
        bail!(
            "corpus {} does not exist; pass --corpus with a JSONL file of {{\"id\", \"text\"}} documents (e.g. {SHIPPED_TEXT_PATH}) or a plain-text file",
            path.display()
        );
    }
    if !path.is_file() {
        bail!(
            "corpus {} is not a file; pass a JSONL or plain-text file",
            path.display()
        );
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read corpus {}", path.display()))?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| anyhow::anyhow!("corpus {} is not UTF-8 text", path.display()))?;
    let is_jsonl = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"));
    let documents = if is_jsonl {
        parse_documents(&text, &path.display().to_string())?
    } else {
        let id = path
            .file_stem()
            .map_or_else(|| "document".to_string(), |s| s.to_string_lossy().into());
        vec![Document { id, text }]
    };
    let documents: Vec<Document> = documents
        .into_iter()
        .filter(|d| !d.text.trim().is_empty())
        .collect();
    if documents.is_empty() {
        bail!(
            "corpus {} is empty: no document has any text; give it at least one non-empty document",
            path.display()
        );
    }
    Ok(Corpus {
        documents,
        digest: fnv1a64_hex(&bytes),
    })
}

/// The document split:/// The document split: with `heldout_every = m > 0`, documents `m-1, 2m-1, …` (0-based, in
/// file order) are held out, so with m = 5 one document in five is; 0 holds nothing out.
pub fn split_of(doc_index: usize, heldout_every: usize) -> Split {
    if heldout_every > 0 && doc_index % heldout_every == heldout_every - 1 {
        Split::Heldout
    } else {
        Split::Train
    }
}

/// Start offsets of `seq_len`-token windows over `n` tokens, `stride` apart, plus one window
/// ending at the last token when the strided ones leave a tail uncovered. Empty when
/// `n < seq_len` (a document shorter than one window is skipped). `stride` 0 counts as
/// `seq_len`.
pub fn window_starts(n: usize, seq_len: usize, stride: usize) -> Vec<usize> {
    if seq_len == 0 || n < seq_len {
        return Vec::new();
    }
    let stride = if stride == 0 { seq_len } else { stride };
    let mut starts: Vec<usize> = (0..=n - seq_len).step_by(stride).collect();
    if starts.last().is_some_and(|&s| s + seq_len < n) {
        starts.push(n - seq_len);
    }
    starts
}

/// One window of the dataset: `seq_len` tokens of document `doc` from token `start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowPlan {
    pub doc: String,
    pub start: usize,
    pub split: Split,
}

/// Every window of every document, ordered window-major (the first window of each
/// document, then the second of each, …) so that any prefix of the plan (`--max-sequences`)
/// samples all documents evenly. `doc_lens[i]` is the token count of document i.
pub fn plan_windows(
    doc_ids: &[String],
    doc_lens: &[usize],
    seq_len: usize,
    stride: usize,
    heldout_every: usize,
) -> Vec<WindowPlan> {
    let per_doc: Vec<Vec<usize>> = doc_lens
        .iter()
        .map(|&n| window_starts(n, seq_len, stride))
        .collect();
    let rounds = per_doc.iter().map(Vec::len).max().unwrap_or(0);
    let mut plan = Vec::new();
    for round in 0..rounds {
        for (doc, starts) in per_doc.iter().enumerate() {
            if let Some(&start) = starts.get(round) {
                plan.push(WindowPlan {
                    doc: doc_ids[doc].clone(),
                    start,
                    split: split_of(doc, heldout_every),
                });
            }
        }
    }
    plan
}

/// `count` start offsets spread evenly over the `n - len + 1` possible starts of a
/// `len`-token window in `n` tokens (empty when it does not fit).
pub fn spread_starts(n: usize, len: usize, count: usize) -> Vec<usize> {
    if n < len || count == 0 {
        return Vec::new();
    }
    let room = n - len;
    if count == 1 {
        return vec![room / 2];
    }
    (0..count).map(|i| i * room / (count - 1)).collect()
}

/// Splits `total` items over buckets in proportion to `weights` (largest remainders), so the
/// counts add up to `total` exactly; all zero when every weight is 0.
pub fn apportion(weights: &[usize], total: usize) -> Vec<usize> {
    let sum: usize = weights.iter().sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let mut counts: Vec<usize> = weights.iter().map(|w| w * total / sum).collect();
    let mut rest: Vec<(usize, usize)> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| (w * total % sum, i))
        .collect();
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let missing = total - counts.iter().sum::<usize>();
    for &(_, i) in rest.iter().take(missing) {
        counts[i] += 1;
    }
    counts
}

/// FNV-1a, 64 bit, as 16 hex digits: a cheap content fingerprint (not a security hash).
pub fn fnv1a64_hex(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_by_document_index() {
        let held: Vec<usize> = (0..12)
            .filter(|&i| split_of(i, 5) == Split::Heldout)
            .collect();
        assert_eq!(held, [4, 9]);
        assert!((0..10).all(|i| split_of(i, 0) == Split::Train));
        assert!((0..3).all(|i| split_of(i, 1) == Split::Heldout));
    }

    #[test]
    fn windows_cover_the_tail() {
        assert_eq!(window_starts(10, 4, 4), [0, 4, 6]);
        assert_eq!(window_starts(8, 4, 4), [0, 4]);
        assert_eq!(window_starts(8, 4, 0), [0, 4]);
        assert_eq!(window_starts(9, 4, 2), [0, 2, 4, 5]);
        assert_eq!(window_starts(3, 4, 4), Vec::<usize>::new());
        assert_eq!(window_starts(4, 4, 4), [0]);
        assert_eq!(window_starts(4, 0, 4), Vec::<usize>::new());
    }

    #[test]
    fn plan_is_window_major_and_keeps_the_split() {
        let ids: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let plan = plan_windows(&ids, &[8, 3, 12], 4, 4, 2);
        let got: Vec<(&str, usize, Split)> = plan
            .iter()
            .map(|w| (w.doc.as_str(), w.start, w.split))
            .collect();
        assert_eq!(
            got,
            [
                ("a", 0, Split::Train),
                ("c", 0, Split::Train),
                ("a", 4, Split::Train),
                ("c", 4, Split::Train),
                ("c", 8, Split::Train),
            ]
        );
        let plan = plan_windows(&ids, &[8, 4, 4], 4, 4, 2);
        assert_eq!(plan[1].doc, "b");
        assert_eq!(plan[1].split, Split::Heldout);
    }

    #[test]
    fn spread_and_apportion() {
        assert_eq!(spread_starts(10, 4, 3), [0, 3, 6]);
        assert_eq!(spread_starts(10, 4, 1), [3]);
        assert_eq!(spread_starts(3, 4, 2), Vec::<usize>::new());
        assert_eq!(apportion(&[1, 1, 2], 8), [2, 2, 4]);
        assert_eq!(apportion(&[1, 1, 1], 4).iter().sum::<usize>(), 4);
        assert_eq!(apportion(&[0, 0], 3), [0, 0]);
        assert_eq!(apportion(&[5, 0, 5], 3), [2, 0, 1]);
    }

    #[test]
    fn digest_is_fnv1a() {
        assert_eq!(fnv1a64_hex(b""), "cbf29ce484222325");
        assert_eq!(fnv1a64_hex(b"a"), "af63dc4c8601ec8c");
    }
}
