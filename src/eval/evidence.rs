//! Where a sample's answer sits in its prompt, and how much of it a pruned prefill kept
//! (RULER's references, passkey's key).
//!
//! A pruned prefill that drops the needle cannot answer, however good the model; one that keeps
//! it and still answers wrongly lost something else (the needle's context, the question's view
//! of it). The share of the answer's tokens that reached the last layer tells the two apart,
//! so a RULER report says whether a scorer or the model is at fault.

use anyhow::Result;

use crate::model::text::TextCodec;
use crate::prefill::StageKept;

/// True when `c` continues a word: a reference found inside a longer word ("art" in "party")
/// is not an occurrence of it.
fn word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte ranges of the whole-word occurrences of `needle` in `text`.
fn occurrences<'a>(text: &'a str, needle: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
    text.match_indices(needle)
        .map(move |(at, m)| (at, at + m.len()))
        .filter(move |&(start, end)| {
            let before = text[..start].chars().next_back();
            let after = text[end..].chars().next();
            !needle.is_empty() && !before.is_some_and(word_char) && !after.is_some_and(word_char)
        })
}

/// Token indices of `text` (tokenized as `codec` does) that overlap an occurrence of any of
/// `references`, sorted and without repeats. Empty when no reference occurs in the text.
pub fn evidence_tokens(codec: &TextCodec, text: &str, references: &[String]) -> Result<Vec<u32>> {
    let offsets = codec.token_offsets(text)?;
    let mut ranges: Vec<(usize, usize)> = references
        .iter()
        .flat_map(|r| occurrences(text, r))
        .collect();
    ranges.sort_unstable();
    let mut tokens = Vec::new();
    for (index, &(start, end)) in offsets.iter().enumerate() {
        // Tokens and ranges are both sorted by start: a range overlapping this token starts
        // before the token ends; any that ended before the token starts are done with.
        let overlaps = ranges
            .iter()
            .take_while(|&&(s, _)| s < end)
            .any(|&(_, e)| start < e);
        if overlaps {
            tokens.push(index as u32);
        }
    }
    Ok(tokens)
}

/// Share of `evidence` among `kept` (the positions that reached the last layer, sorted);
/// `None` when there is no evidence to keep.
pub fn kept_share(evidence: &[u32], kept: &[u32]) -> Option<f64> {
    if evidence.is_empty() {
        return None;
    }
    let found = evidence
        .iter()
        .filter(|p| kept.binary_search(p).is_ok())
        .count();
    Some(found as f64 / evidence.len() as f64)
}

/// [`kept_share`] after each pruning stage, in stage order, as `(layer, share)`: the stage
/// that dropped a lost answer. Empty when there is no evidence or no stage.
pub fn share_by_stage(evidence: &[u32], stages: &[StageKept]) -> Vec<(usize, f64)> {
    stages
        .iter()
        .filter_map(|stage| {
            let mut kept = stage.positions.clone();
            kept.sort_unstable();
            kept_share(evidence, &kept).map(|share| (stage.layer, share))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_only() {
        let text = "art party art. The art-deco";
        let found: Vec<_> = occurrences(text, "art").collect();
        assert_eq!(found, vec![(0, 3), (10, 13), (19, 22)]);
    }

    #[test]
    fn evidence_covers_every_byte_of_each_occurrence() {
        // Bytes: token i is byte i.
        let text = "key 1234 and 99; 1234.";
        let tokens = evidence_tokens(&TextCodec::Bytes, text, &["1234".to_string()]).unwrap();
        assert_eq!(tokens, vec![4, 5, 6, 7, 17, 18, 19, 20]);
        let none = evidence_tokens(&TextCodec::Bytes, text, &["777".to_string()]).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn kept_share_counts_the_kept_evidence() {
        assert_eq!(kept_share(&[2, 3, 4, 5], &[0, 1, 2, 3, 9]), Some(0.5));
        assert_eq!(kept_share(&[2, 3], &[2, 3]), Some(1.0));
        assert_eq!(kept_share(&[], &[1, 2]), None);
    }

    #[test]
    fn shares_by_stage_follow_the_stages() {
        let stages = [
            StageKept {
                layer: 4,
                positions: vec![5, 3, 2, 0],
            },
            StageKept {
                layer: 7,
                positions: vec![0, 2],
            },
        ];
        assert_eq!(share_by_stage(&[2, 3], &stages), vec![(4, 1.0), (7, 0.5)]);
        assert!(share_by_stage(&[], &stages).is_empty());
        assert!(share_by_stage(&[2], &[]).is_empty());
    }
}
