//! Common words extraction, after RULER's `common_words_extraction.py`: a numbered list
//! ("1. word 2. word …") in which 10 common words repeat more often than every other word;
//! the answer is the 10 common words.
//!
//! As RULER: below 4096 tokens the common words appear 6 times and the others once, and one
//! worked example (20 words: 10 common × 3, 10 others × 1) comes first; from 4096 tokens on
//! the counts are 30 and 3 and the example has 40 words (× 10 and × 3). The haystack size is
//! the number of distinct words. Words come from the shipped list (RULER: wonderwords); the
//! example's words are kept apart from the question's so the list's counts are exactly the
//! stated ones.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::draft::{Draft, Generator};
use super::haystack::Corpus;
use super::templates::{fill, CWE, CWE_ANSWER};

/// Common words per list.
pub const COMMON: usize = 10;

/// The repeat counts at one length: (common, other) in the question's list, and the
/// example's (words, common repeats, other repeats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CweShape {
    pub common_repeats: usize,
    pub other_repeats: usize,
    pub example_words: usize,
    pub example_common_repeats: usize,
    pub example_other_repeats: usize,
}

impl CweShape {
    /// RULER's choice by the target length.
    pub fn at(length: usize) -> Self {
        if length < 4096 {
            Self {
                common_repeats: 6,
                other_repeats: 1,
                example_words: 20,
                example_common_repeats: 3,
                example_other_repeats: 1,
            }
        } else {
            Self {
                common_repeats: 30,
                other_repeats: 3,
                example_words: 40,
                example_common_repeats: 10,
                example_other_repeats: 3,
            }
        }
    }
}

/// The list of `words` (the first [`COMMON`] repeated `common` times, the rest `other`
/// times), shuffled by `rng`.
pub fn word_list(words: &[&str], common: usize, other: usize, rng: &mut impl Rng) -> Vec<String> {
    let split = COMMON.min(words.len());
    let mut list: Vec<String> = Vec::new();
    for _ in 0..common {
        list.extend(words[..split].iter().map(|w| w.to_string()));
    }
    for _ in 0..other {
        list.extend(words[split..].iter().map(|w| w.to_string()));
    }
    list.shuffle(rng);
    list
}

/// "1. a 2. b 3. c".
pub fn numbered(words: &[String]) -> String {
    words
        .iter()
        .enumerate()
        .map(|(i, w)| format!("{}. {w}", i + 1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A common-words sample.
pub struct Cwe<'a> {
    shape: CweShape,
    /// The shipped words in this sample's order: the question's list takes a prefix, the
    /// example the tail.
    order: Vec<&'a str>,
    /// The worked example with its answer.
    example: String,
    /// Seeds the shuffle of the question's list (one per size).
    list_seed: u64,
}

impl<'a> Cwe<'a> {
    pub fn new(rng: &mut StdRng, length: usize, corpus: &'a Corpus) -> Self {
        let shape = CweShape::at(length);
        let mut order = corpus.words.clone();
        order.shuffle(rng);
        let tail = order.len() - shape.example_words;
        let example_words = &order[tail..];
        let list = word_list(
            example_words,
            shape.example_common_repeats,
            shape.example_other_repeats,
            rng,
        );
        let answer: Vec<String> = example_words[..COMMON]
            .iter()
            .map(|w| w.to_string())
            .collect();
        let example = format!(
            "{}{} {}",
            fill(CWE, &[("context", &numbered(&list))]),
            CWE_ANSWER,
            numbered(&answer)
        );
        Self {
            shape,
            order,
            example,
            list_seed: rng.random(),
        }
    }

    /// The question's list with `distinct` words.
    pub fn list(&self, distinct: usize) -> Vec<String> {
        let mut rng = StdRng::seed_from_u64(self.list_seed ^ distinct as u64);
        word_list(
            &self.order[..distinct],
            self.shape.common_repeats,
            self.shape.other_repeats,
            &mut rng,
        )
    }
}

impl Generator for Cwe<'_> {
    fn references(&self) -> Vec<String> {
        self.order[..COMMON].iter().map(|w| w.to_string()).collect()
    }

    fn min_units(&self) -> usize {
        COMMON
    }

    fn max_units(&self) -> Option<usize> {
        Some(self.order.len() - self.shape.example_words)
    }

    fn render(&self, units: usize) -> Draft {
        let context = numbered(&self.list(units));
        Draft {
            body: format!("{}\n{}", self.example, fill(CWE, &[("context", &context)])),
            answer_prefix: CWE_ANSWER.to_string(),
            anchor: None,
        }
    }
}
