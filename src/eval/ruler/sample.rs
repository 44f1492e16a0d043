//! One RULER sample, ready to feed: the task's generator drawn from the sample's seed, its
//! haystack sized to the target length ([`super::fit`]), tokenized.
//!
//! A sample's random content (keys, values, needle depth, chain, word order) is a function
//! of (`--seed`, task, sample index) alone, seeded through `derive_seed`: the same sample
//! comes out in any run, whatever else runs with it, and sample i hides the same needles at
//! every length (only the haystack around them grows).

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::cwe::Cwe;
use super::draft::{Draft, Generator};
use super::fit::{largest_fitting, Fit};
use super::fwe::Fwe;
use super::haystack::{sample_depth, Corpus};
use super::niah::{Niah, NiahConfig};
use super::task::Task;
use super::vt::Vt;
use crate::report::derive_seed;

/// Tokenizes a text.
pub type Encode<'a> = &'a dyn Fn(&str) -> Result<Vec<u32>>;
/// Turns a prompt body into what is fed (the chat template, or the text as is).
pub type Wrap<'a> = &'a dyn Fn(&str) -> Result<String>;

/// Where a sample sits among all samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleId {
    pub task: Task,
    pub length: usize,
    pub index: usize,
}

/// A built sample.
#[derive(Debug, Clone, PartialEq)]
pub struct RulerSample {
    pub id: SampleId,
    /// What is fed: the wrapped body, then the answer prefix.
    pub text: String,
    pub ids: Vec<u32>,
    /// What the answer must contain.
    pub references: Vec<String>,
    /// Size of the haystack in the task's unit.
    pub haystack_units: usize,
    /// The asked depth of the first answer's needle (needle tasks).
    pub depth: Option<f64>,
    /// Token index where the first answer's needle (vt: the chain's first statement) starts.
    pub answer_position: Option<usize>,
}

/// The generator of `id`, its random content drawn.
fn generator<'a>(
    id: SampleId,
    seed: u64,
    corpus: &'a Corpus,
    encode: Encode<'_>,
) -> Result<Box<dyn Generator + 'a>> {
    let mut rng = StdRng::seed_from_u64(derive_seed(seed, &[id.task.code(), id.index as u64]));
    Ok(match id.task {
        Task::Vt => Box::new(Vt::new(&mut rng, id.length, &|t| Ok(encode(t)?.len()))?),
        Task::Cwe => Box::new(Cwe::new(&mut rng, id.length, corpus)),
        Task::Fwe => Box::new(Fwe::new(&mut rng, id.length)),
        task => {
            let Some(config) = NiahConfig::of(task) else {
                bail!("no generator for {task}");
            };
            Box::new(Niah::new(config, &mut rng, corpus, sample_depth(id.index)))
        }
    })
}

/// The fed text of a draft.
fn feed(draft: &Draft, wrap: Wrap<'_>) -> Result<String> {
    Ok(wrap(&draft.body)? + &draft.answer_prefix)
}

/// The tokens of a draft as fed.
fn tokens(draft: &Draft, encode: Encode<'_>, wrap: Wrap<'_>) -> Result<usize> {
    Ok(encode(&feed(draft, wrap)?)?.len())
}

/// The shortest prompt `id` can have: its template with the smallest haystack (or the
/// task's own floor), at `id.length`'s settings.
pub fn minimum_length(
    id: SampleId,
    seed: u64,
    corpus: &Corpus,
    encode: Encode<'_>,
    wrap: Wrap<'_>,
) -> Result<usize> {
    let generator = generator(id, seed, corpus, encode)?;
    let bare = tokens(&generator.render(generator.min_units()), encode, wrap)?;
    Ok(bare.max(generator.min_length()))
}

fn too_short(task: Task, minimum: usize, length: usize) -> anyhow::Error {
    anyhow::anyhow!(
        "task {task} needs a --length of at least {minimum} tokens (its template with the smallest haystack); got {length}"
    )
}

/// Builds sample `id`: the largest haystack whose prompt is at most `id.length` tokens. Fails
/// with the minimum length when even the smallest haystack does not fit.
pub fn build_sample(
    id: SampleId,
    seed: u64,
    corpus: &Corpus,
    encode: Encode<'_>,
    wrap: Wrap<'_>,
) -> Result<RulerSample> {
    let generator = generator(id, seed, corpus, encode)?;
    let floor = generator.min_length();
    let mut count = |n: usize| tokens(&generator.render(n), encode, wrap);
    if id.length < floor {
        let bare = count(generator.min_units())?;
        return Err(too_short(id.task, bare.max(floor), id.length));
    }
    let units = match largest_fitting(
        generator.min_units(),
        generator.max_units(),
        id.length,
        &mut count,
    )? {
        Fit::Fits { units, .. } => units,
        Fit::TooShort { minimum } => return Err(too_short(id.task, minimum.max(floor), id.length)),
    };
    let draft = generator.render(units);
    let text = feed(&draft, wrap)?;
    let ids = encode(&text)?;
    let answer_position = match &draft.anchor {
        Some(anchor) => match text.find(anchor.as_str()) {
            // A space before the needle joins its first token (" One"): count the tokens
            // before that token.
            Some(at) => Some(encode(text[..at].strip_suffix(' ').unwrap_or(&text[..at]))?.len()),
            None => bail!("the chat template dropped a needle of {}", id.task),
        },
        None => None,
    };
    Ok(RulerSample {
        id,
        text,
        ids,
        references: generator.references(),
        haystack_units: units,
        depth: generator.depth(),
        answer_position,
    })
}

/// Every sample of `tasks` × `lengths` × `samples`, in that order. A length too short for a
/// task fails naming the shortest length that fits all its samples.
pub fn build_samples(
    tasks: &[Task],
    lengths: &[usize],
    samples: usize,
    seed: u64,
    corpus: &Corpus,
    encode: Encode<'_>,
    wrap: Wrap<'_>,
) -> Result<Vec<RulerSample>> {
    let mut out = Vec::with_capacity(tasks.len() * lengths.len() * samples);
    for &task in tasks {
        for &length in lengths {
            let ids = (0..samples).map(|index| SampleId {
                task,
                length,
                index,
            });
            let mut minimum = 0;
            for id in ids.clone() {
                minimum = minimum.max(minimum_length(id, seed, corpus, encode, wrap)?);
            }
            if minimum > length {
                return Err(too_short(task, minimum, length));
            }
            for id in ids {
                out.push(build_sample(id, seed, corpus, encode, wrap)?);
            }
        }
    }
    Ok(out)
}
