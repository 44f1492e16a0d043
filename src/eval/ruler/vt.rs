//! Variable tracking, after RULER's `variable_tracking.py` (1 chain, 4 hops, noise haystack):
//! "VAR ABCDE = 12345" then "VAR FGHIJ = VAR ABCDE " and so on, hidden in order among noise
//! lines; the answer names every variable that ends up holding the value.
//!
//! As in RULER, the prompt opens with one worked example (3-letter names, its own value and
//! noise) followed by its answer. RULER sizes that example to 500 tokens; here its noise is
//! the most that keeps it within min(500, length / 4) tokens, and the example is left out
//! when even without noise it is over that (below ≈ 512 tokens with SmolLM2's tokenizer), so
//! the example never takes more than a quarter of the prompt. The chain's statements go at
//! sorted random depths of the noise, as RULER's sorted random positions.

use std::collections::HashSet;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::Rng;

use super::draft::{Draft, Generator};
use super::fit::{largest_fitting, Fit};
use super::haystack::{insert_at_depths, noise_lines};
use super::templates::{fill, VT, VT_ANSWER};
use super::vocab::variable_names;

/// Hops per chain (RULER's default), so hops + 1 variables hold the value.
pub const HOPS: usize = 4;

/// RULER's token budget for its in-context example.
const EXAMPLE_TOKENS: usize = 500;

/// One chain of assignments and where its statements go.
struct Chain {
    names: Vec<String>,
    value: String,
    /// Depth in the noise of each statement, ascending.
    places: Vec<f64>,
}

impl Chain {
    fn draw(rng: &mut StdRng, name_len: usize, avoid: &HashSet<String>, value_avoid: &str) -> Self {
        let names = variable_names(rng, HOPS + 1, name_len, avoid);
        // np.random.randint(10000, 99999): the upper end excluded.
        let value = loop {
            let v = rng.random_range(10_000u32..99_999).to_string();
            if v != value_avoid {
                break v;
            }
        };
        let mut places: Vec<f64> = (0..=HOPS).map(|_| rng.random::<f64>()).collect();
        places.sort_by(f64::total_cmp);
        Self {
            names,
            value,
            places,
        }
    }

    /// RULER's statements; the hops keep its trailing space.
    fn statements(&self) -> Vec<String> {
        let mut out = vec![format!("VAR {} = {}", self.names[0], self.value)];
        out.extend(
            self.names
                .windows(2)
                .map(|w| format!("VAR {} = VAR {} ", w[1], w[0])),
        );
        out
    }

    /// The template filled with `sentences` noise sentences: (body, answer prefix).
    fn prompt(&self, sentences: usize) -> (String, String) {
        let needles = self.places.iter().copied().zip(self.statements()).collect();
        let context = insert_at_depths(noise_lines(sentences), needles).join("\n");
        let num_v = self.names.len().to_string();
        (
            fill(VT, &[("query", &self.value), ("context", &context)]),
            fill(VT_ANSWER, &[("num_v", &num_v), ("query", &self.value)]),
        )
    }
}

/// A variable-tracking sample.
pub struct Vt {
    chain: Chain,
    /// The worked example with its answer and a blank line, or nothing.
    example: String,
}

impl Vt {
    /// Draws the sample and sizes its example for a prompt of `length` tokens; `tokens`
    /// counts a text's tokens.
    pub fn new(
        rng: &mut StdRng,
        length: usize,
        tokens: &dyn Fn(&str) -> Result<usize>,
    ) -> Result<Self> {
        let chain = Chain::draw(rng, 5, &HashSet::new(), "");
        let shown = Chain::draw(rng, 3, &chain.names.iter().cloned().collect(), &chain.value);
        let budget = EXAMPLE_TOKENS.min(length / 4);
        let text = |n: usize| {
            let (body, answer) = shown.prompt(n);
            body + &answer
        };
        // RULER joins the example, its answer and the question as "{example} {names}\n\n…".
        let example = match largest_fitting(0, None, budget, &mut |n| tokens(&text(n)))? {
            Fit::Fits { units, .. } => format!("{} {}\n\n", text(units), shown.names.join(" ")),
            Fit::TooShort { .. } => String::new(),
        };
        Ok(Self { chain, example })
    }
}

impl Generator for Vt {
    fn references(&self) -> Vec<String> {
        self.chain.names.clone()
    }

    fn min_units(&self) -> usize {
        0
    }

    fn render(&self, units: usize) -> Draft {
        let (body, answer) = self.chain.prompt(units);
        Draft {
            body: format!("{}{body}", self.example),
            answer_prefix: answer,
            anchor: Some(self.chain.statements()[0].clone()),
        }
    }
}
