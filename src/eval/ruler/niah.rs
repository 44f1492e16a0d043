//! Needle in a haystack, after RULER's `niah.py`: needles "One of the special magic numbers
//! for {key} is: {value}." hidden in noise, prose or other needles; the question asks for the
//! values of one or more keys.
//!
//! Following RULER: `num_needle_k` keys (at least as many as are queried), `num_needle_v`
//! values per key, one needle per (key, value); the queried keys are a random choice of the
//! keys and their values are the references. The needle of the first reference goes at the
//! sample's depth ([`super::haystack::sample_depth`]); the others at distinct depths drawn from
//! RULER's 40 evenly spaced ones. Keys never repeat, and no distractor value equals a
//! reference, so each reference occurs in the prompt once.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use super::draft::{Draft, Generator};
use super::haystack::{insert_at_depths, noise_lines, ruler_depths, Corpus};
use super::task::Task;
use super::templates::{fill, join_queries, niah_template, NEEDLE};
use super::vocab::{number, uuid, word_key};

/// What the needles are hidden in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Haystack {
    Noise,
    Essay,
    /// Lines that are needles themselves, with other keys.
    Needle,
}

/// What keys and values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Words,
    Numbers,
    Uuids,
}

/// One NIAH task's settings (RULER's synthetic.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NiahConfig {
    pub haystack: Haystack,
    pub key: Kind,
    pub value: Kind,
    pub num_k: usize,
    pub num_v: usize,
    pub num_q: usize,
}

impl NiahConfig {
    /// The settings of a NIAH task; None for the others.
    pub fn of(task: Task) -> Option<Self> {
        use Haystack::*;
        use Kind::*;
        let c = |haystack, key, value, num_k: usize, num_v, num_q: usize| NiahConfig {
            haystack,
            key,
            value,
            // RULER: num_needle_k = max(num_needle_k, num_needle_q).
            num_k: num_k.max(num_q),
            num_v,
            num_q,
        };
        Some(match task {
            Task::NiahSingle1 => c(Noise, Words, Numbers, 1, 1, 1),
            Task::NiahSingle2 => c(Essay, Words, Numbers, 1, 1, 1),
            Task::NiahSingle3 => c(Essay, Words, Uuids, 1, 1, 1),
            Task::NiahMultikey1 => c(Essay, Words, Numbers, 4, 1, 1),
            Task::NiahMultikey2 => c(Needle, Words, Numbers, 1, 1, 1),
            Task::NiahMultikey3 => c(Needle, Uuids, Uuids, 1, 1, 1),
            Task::NiahMultivalue => c(Essay, Words, Numbers, 1, 4, 1),
            Task::NiahMultiquery => c(Essay, Words, Numbers, 1, 1, 4),
            _ => return None,
        })
    }

    fn value_type(&self) -> &'static str {
        match self.value {
            Kind::Uuids => "uuids",
            _ => "numbers",
        }
    }
}

/// One random draw of `kind`.
fn draw(kind: Kind, rng: &mut impl Rng, corpus: &Corpus) -> String {
    match kind {
        Kind::Words => word_key(rng, &corpus.words),
        Kind::Numbers => number(rng),
        Kind::Uuids => uuid(rng),
    }
}

/// A NIAH sample with its keys, values and needle depths drawn.
pub struct Niah<'a> {
    config: NiahConfig,
    corpus: &'a Corpus,
    /// (depth, needle text), the first holding the first reference.
    needles: Vec<(f64, String)>,
    depth: f64,
    queries: Vec<String>,
    references: Vec<String>,
    /// Seeds the needle haystack's lines (drawn afresh, identically, for every size).
    haystack_seed: u64,
    /// Every key and value of the sample, which the needle haystack must not reuse.
    taken: HashSet<String>,
}

impl<'a> Niah<'a> {
    /// Draws the sample from `rng`; the first reference's needle goes at `depth`.
    pub fn new(config: NiahConfig, rng: &mut StdRng, corpus: &'a Corpus, depth: f64) -> Self {
        let mut keys: Vec<String> = Vec::new();
        let mut values: Vec<Vec<String>> = Vec::new();
        let mut taken: HashSet<String> = HashSet::new();
        let mut fresh = |kind: Kind, rng: &mut StdRng| loop {
            let v = draw(kind, rng, corpus);
            if taken.insert(v.clone()) {
                break v;
            }
        };
        for _ in 0..config.num_k {
            keys.push(fresh(config.key, rng));
            values.push(
                (0..config.num_v)
                    .map(|_| fresh(config.value, rng))
                    .collect(),
            );
        }
        let mut picked: Vec<usize> = (0..config.num_k).collect();
        picked.shuffle(rng);
        picked.truncate(config.num_q);
        let queries: Vec<String> = picked.iter().map(|&i| keys[i].clone()).collect();
        let references: Vec<String> = picked.iter().flat_map(|&i| values[i].clone()).collect();

        let needle = |key: &str, value: &str| {
            fill(
                NEEDLE,
                &[
                    ("type_needle_v", config.value_type()),
                    ("key", key),
                    ("value", value),
                ],
            )
        };
        // The first reference's needle first; every other needle after it.
        let first = picked[0];
        let mut texts = vec![needle(&keys[first], &values[first][0])];
        for (k, key) in keys.iter().enumerate() {
            for (v, value) in values[k].iter().enumerate() {
                if (k, v) != (first, 0) {
                    texts.push(needle(key, value));
                }
            }
        }
        let others: Vec<f64> = ruler_depths()
            .choose_multiple(rng, texts.len() - 1)
            .copied()
            .collect();
        let needles = std::iter::once(depth).chain(others).zip(texts).collect();
        Self {
            config,
            corpus,
            needles,
            depth,
            queries,
            references,
            haystack_seed: rng.random(),
            taken,
        }
    }

    /// The needle haystack: `n` needles with keys and values of their own.
    fn needle_lines(&self, n: usize) -> Vec<String> {
        let mut rng = StdRng::seed_from_u64(self.haystack_seed);
        let mut fresh = |kind: Kind| loop {
            let v = draw(kind, &mut rng, self.corpus);
            if !self.taken.contains(&v) {
                break v;
            }
        };
        (0..n)
            .map(|_| {
                let key = fresh(self.config.key);
                let value = fresh(self.config.value);
                fill(
                    NEEDLE,
                    &[
                        ("type_needle_v", self.config.value_type()),
                        ("key", &key),
                        ("value", &value),
                    ],
                )
            })
            .collect()
    }
}

impl Generator for Niah<'_> {
    fn references(&self) -> Vec<String> {
        self.references.clone()
    }

    fn min_units(&self) -> usize {
        0
    }

    fn render(&self, units: usize) -> Draft {
        let (units, separator) = match self.config.haystack {
            Haystack::Noise => (noise_lines(units), "\n"),
            Haystack::Essay => (self.corpus.essay(units), " "),
            Haystack::Needle => (self.needle_lines(units), "\n"),
        };
        let context = insert_at_depths(units, self.needles.clone()).join(separator);
        let (body, answer) = niah_template(
            self.config.value_type(),
            self.config.num_q * self.config.num_v,
        );
        let query = join_queries(&self.queries);
        Draft {
            body: fill(&body, &[("query", &query), ("context", &context)]),
            answer_prefix: fill(&answer, &[("query", &query)]),
            anchor: Some(self.needles[0].1.clone()),
        }
    }

    fn depth(&self) -> Option<f64> {
        Some(self.depth)
    }
}
