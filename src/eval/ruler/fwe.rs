//! Frequent words extraction, after RULER's `freq_words_extraction.py`: a text of coded
//! words (6 random letters) whose counts follow a Zipf law with α = 2; the answer is the three
//! most frequent, after "...", which takes the top rank as noise.
//!
//! As RULER: a vocabulary of length / 50 coded words (RULER: of the length less the answer's
//! tokens; here the prompt alone fills the length) in random order, its first entry replaced
//! by "...". With N the haystack size, the word of rank k appears ⌊N·k^−α / ζ(α)⌋ times; the
//! words are shuffled and joined by spaces. N is the unit searched over; its smallest value
//! is the one from which ranks 2, 3, 4 (the answer) and 5 always have strictly decreasing
//! counts, so the answer is never tied.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::draft::{Draft, Generator};
use super::templates::{fill, FWE, FWE_ANSWER};
use super::vocab::coded_words;

/// RULER's Zipf exponent.
pub const ALPHA: f64 = 2.0;

/// Letters per coded word.
const CODED_LEN: usize = 6;

/// The noise word at rank 1.
pub const DOTS: &str = "...";

/// ζ(2) = π²/6.
fn zeta_alpha() -> f64 {
    std::f64::consts::PI * std::f64::consts::PI / 6.0
}

/// How often the word of rank `k` (1-based) appears for haystack size `n`.
pub fn zipf_count(n: usize, k: usize) -> usize {
    (n as f64 * (k as f64).powf(-ALPHA) / zeta_alpha()) as usize
}

/// The smallest vocabulary that has an answer: "...", three answers and one word to beat.
pub const MIN_VOCAB: usize = 5;

/// The smallest length with a vocabulary of [`MIN_VOCAB`] words.
pub const MIN_LENGTH: usize = MIN_VOCAB * 50;

/// A frequent-words sample.
pub struct Fwe {
    /// Rank order: "..." first, then the answer's three.
    vocab: Vec<String>,
    shuffle_seed: u64,
}

impl Fwe {
    pub fn new(rng: &mut StdRng, length: usize) -> Self {
        // Drawn before the length-sized vocabulary, so it does not depend on the length.
        let shuffle_seed = rng.random();
        let mut vocab = coded_words(rng, (length / 50).max(MIN_VOCAB), CODED_LEN);
        vocab[0] = DOTS.to_string();
        Self {
            vocab,
            shuffle_seed,
        }
    }

    /// The coded text's words for haystack size `n`, shuffled.
    pub fn words(&self, n: usize) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (rank, word) in self.vocab.iter().enumerate() {
            out.extend(std::iter::repeat_n(word.as_str(), zipf_count(n, rank + 1)));
        }
        out.shuffle(&mut StdRng::seed_from_u64(self.shuffle_seed ^ n as u64));
        out
    }
}

impl Generator for Fwe {
    fn references(&self) -> Vec<String> {
        self.vocab[1..4].to_vec()
    }

    /// ⌊x⌋ − ⌊y⌋ ≥ 1 whenever x − y ≥ 1, so counts of neighbouring ranks k, k+1 (2 ≤ k ≤ 4)
    /// differ for every n ≥ 1 / ((k^−α − (k+1)^−α) / ζ(α)).
    fn min_units(&self) -> usize {
        (2..=4)
            .map(|k: u32| {
                let gap =
                    (f64::from(k).powf(-ALPHA) - f64::from(k + 1).powf(-ALPHA)) / zeta_alpha();
                (1.0 / gap).ceil() as usize
            })
            .max()
            .unwrap_or(1)
    }

    fn min_length(&self) -> usize {
        MIN_LENGTH
    }

    fn render(&self, units: usize) -> Draft {
        let context = self.words(units).join(" ");
        Draft {
            body: fill(FWE, &[("context", &context)]),
            answer_prefix: FWE_ANSWER.to_string(),
            anchor: None,
        }
    }
}
