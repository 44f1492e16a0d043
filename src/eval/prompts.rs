//! The agreement prompt set: a JSONL file of `{"id", "text", "approx_tokens"}`, and the
//! generator of the shipped default (`data/eval/agreement.jsonl`, compiled in).
//!
//! Each default prompt is a passage of the shipped book (`data/text/eighty_days.jsonl`, whole
//! paragraphs from a seeded starting point, the last one cut at a word boundary) followed by
//! a blank line and an instruction-style question about it. Target lengths are spread
//! log-uniformly over [min, max] tokens in a low-discrepancy order (golden-ratio sequence),
//! so any first N prompts of the file (`--limit N`) cover the whole range of lengths.

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::corpus::Document;

/// The default prompt set, one JSON object per line.
pub const DEFAULT_PROMPTS_JSONL: &str = include_str!("../../data/eval/agreement.jsonl");

/// Where the default set lives in the repository, for reports.
pub const DEFAULT_PROMPTS_PATH: &str = "data/eval/agreement.jsonl";

/// The questions appended to the passages, in turn.
pub const QUESTIONS: [&str; 12] = [
    "Summarise the passage above in one sentence.",
    "Who is the main character mentioned above?",
    "Where does the scene described above take place?",
    "List three facts stated in the passage above.",
    "What happens at the end of the passage above?",
    "Describe the mood of the passage above in a few words.",
    "Which people are named in the passage above?",
    "Give the passage above a short title.",
    "What does the last paragraph above say? Answer briefly.",
    "Is anyone travelling in the passage above? Explain in one sentence.",
    "What time or date is mentioned in the passage above, if any?",
    "Write one question a reader might ask after reading the passage above.",
];

/// One prompt of a set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPrompt {
    pub id: String,
    pub text: String,
    /// Tokens of `text` with the tokenizer that built the set (informative; runs measure
    /// their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approx_tokens: Option<usize>,
}

/// Parses a JSONL prompt set; blank lines are skipped. Errors name the line; ids must be
/// unique and texts non-empty.
pub fn parse_prompts(jsonl: &str, origin: &str) -> Result<Vec<EvalPrompt>> {
    let mut prompts: Vec<EvalPrompt> = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let prompt: EvalPrompt = serde_json::from_str(line).with_context(|| {
            format!(
                "{origin} line {}: not a prompt (want {{\"id\": …, \"text\": …}})",
                i + 1
            )
        })?;
        if prompt.text.trim().is_empty() {
            bail!(
                "{origin} line {}: prompt {:?} has empty text",
                i + 1,
                prompt.id
            );
        }
        if prompts.iter().any(|p| p.id == prompt.id) {
            bail!(
                "{origin} line {}: prompt id {:?} is repeated",
                i + 1,
                prompt.id
            );
        }
        prompts.push(prompt);
    }
    if prompts.is_empty() {
        bail!("{origin} holds no prompts");
    }
    Ok(prompts)
}

/// The prompts of `path`, or the shipped default set when `None`.
pub fn load_prompts(path: Option<&std::path::Path>) -> Result<(Vec<EvalPrompt>, String)> {
    match path {
        None => Ok((
            parse_prompts(DEFAULT_PROMPTS_JSONL, DEFAULT_PROMPTS_PATH)?,
            DEFAULT_PROMPTS_PATH.to_string(),
        )),
        Some(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read prompt set {name}"))?;
            Ok((parse_prompts(&text, &name)?, name))
        }
    }
}

/// How to build a prompt set.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSetSpec {
    pub count: usize,
    pub min_tokens: usize,
    pub max_tokens: usize,
    pub seed: u64,
}

/// Target length of prompt `i` of `spec`: `min · (max/min)^u` with u the fractional part of
/// `(i + 0.5) · φ⁻¹`, rounded.
pub fn target_tokens(spec: &PromptSetSpec, i: usize) -> usize {
    let phi_inv = (5f64.sqrt() - 1.0) / 2.0;
    let u = ((i as f64 + 0.5) * phi_inv).fract();
    let (lo, hi) = (spec.min_tokens as f64, spec.max_tokens as f64);
    (lo * (hi / lo).powf(u)).round() as usize
}

/// Builds a prompt set from `documents` (paragraphs separated by blank lines), measuring
/// lengths with `count_tokens`. Every prompt has between `min_tokens` and `max_tokens`
/// tokens, within a few tokens of its target.
pub fn build_prompt_set(
    documents: &[Document],
    spec: &PromptSetSpec,
    count_tokens: &dyn Fn(&str) -> Result<usize>,
) -> Result<Vec<EvalPrompt>> {
    if spec.min_tokens == 0 || spec.min_tokens > spec.max_tokens {
        bail!(
            "prompt lengths {}..{} are not a range; give 0 < --min-tokens <= --max-tokens",
            spec.min_tokens,
            spec.max_tokens
        );
    }
    // (document index, paragraph) in reading order.
    let paragraphs: Vec<(usize, &str)> = documents
        .iter()
        .enumerate()
        .flat_map(|(d, doc)| {
            doc.text
                .split("\n\n")
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(move |p| (d, p))
        })
        .collect();
    if paragraphs.is_empty() {
        bail!("the source text has no paragraphs");
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(spec.seed);
    let mut prompts = Vec::with_capacity(spec.count);
    for i in 0..spec.count {
        let target = target_tokens(spec, i);
        let question = QUESTIONS[i % QUESTIONS.len()];
        let start = rng.random_range(0..paragraphs.len());
        let text = fill_to(&paragraphs, start, question, target, count_tokens)?;
        let tokens = count_tokens(&text)?;
        if tokens < spec.min_tokens || tokens > spec.max_tokens {
            bail!(
                "prompt {i} came out at {tokens} tokens, outside {}..={}; the source text is too short for this range",
                spec.min_tokens,
                spec.max_tokens
            );
        }
        prompts.push(EvalPrompt {
            id: format!("p{i:03}"),
            text,
            approx_tokens: Some(tokens),
        });
    }
    Ok(prompts)
}

fn compose(passage: &str, question: &str) -> String {
    format!("{passage}\n\n{question}")
}

/// The longest passage starting at paragraph `start` (wrapping round the book) whose prompt
/// fits in `target` tokens: whole paragraphs, then the words of the next one that still fit
/// (found by bisection).
fn fill_to(
    paragraphs: &[(usize, &str)],
    start: usize,
    question: &str,
    target: usize,
    count_tokens: &dyn Fn(&str) -> Result<usize>,
) -> Result<String> {
    let mut passage = String::new();
    for k in 0..paragraphs.len() {
        let (_, paragraph) = paragraphs[(start + k) % paragraphs.len()];
        let joined = if passage.is_empty() {
            paragraph.to_string()
        } else {
            format!("{passage}\n\n{paragraph}")
        };
        if count_tokens(&compose(&joined, question))? <= target {
            passage = joined;
            continue;
        }
        // Part of this paragraph: the most words that fit.
        let words: Vec<&str> = paragraph.split_whitespace().collect();
        let with = |n: usize| -> String {
            let part = words[..n].join(" ");
            if passage.is_empty() {
                part
            } else {
                format!("{passage}\n\n{part}")
            }
        };
        let (mut lo, mut hi) = (0usize, words.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if count_tokens(&compose(&with(mid), question))? <= target {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        if lo > 0 {
            passage = with(lo);
        }
        break;
    }
    if passage.is_empty() {
        bail!("no passage fits in {target} tokens with its question");
    }
    Ok(compose(&passage, question))
}

/// The set as JSONL, one prompt per line.
pub fn to_jsonl(prompts: &[EvalPrompt]) -> Result<String> {
    let mut out = String::new();
    for p in prompts {
        out.push_str(&serde_json::to_string(p)?);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs() -> Vec<Document> {
        crate::corpus::shipped_documents().unwrap()
    }

    fn bytes(text: &str) -> Result<usize> {
        Ok(text.len())
    }

    #[test]
    fn targets_cover_the_range_early() {
        let spec = PromptSetSpec {
            count: 60,
            min_tokens: 256,
            max_tokens: 4096,
            seed: 1,
        };
        let first: Vec<usize> = (0..10).map(|i| target_tokens(&spec, i)).collect();
        assert!(
            first.iter().all(|&t| (256..=4096).contains(&t)),
            "{first:?}"
        );
        assert!(first.iter().any(|&t| t < 512), "{first:?}");
        assert!(first.iter().any(|&t| t > 2048), "{first:?}");
    }

    #[test]
    fn built_prompts_fit_their_targets_and_end_with_a_question() {
        let spec = PromptSetSpec {
            count: 8,
            min_tokens: 300,
            max_tokens: 3000,
            seed: 7,
        };
        let prompts = build_prompt_set(&docs(), &spec, &bytes).unwrap();
        assert_eq!(prompts.len(), 8);
        for (i, p) in prompts.iter().enumerate() {
            let n = p.approx_tokens.unwrap();
            let target = target_tokens(&spec, i);
            assert!(n <= target && n + 40 >= target, "{i}: {n} vs {target}");
            assert!(p.text.ends_with(QUESTIONS[i % QUESTIONS.len()]));
        }
        let again = build_prompt_set(&docs(), &spec, &bytes).unwrap();
        assert_eq!(prompts, again, "deterministic for a seed");
        let round_trip = parse_prompts(&to_jsonl(&prompts).unwrap(), "x").unwrap();
        assert_eq!(round_trip, prompts);
    }

    #[test]
    fn parse_errors_name_the_line() {
        let err = parse_prompts(
            "{\"id\":\"a\",\"text\":\"x\"}\n{\"id\":\"a\",\"text\":\"y\"}",
            "f",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("line 2") && err.contains("repeated"), "{err}");
        let err = parse_prompts("nope", "f").unwrap_err().to_string();
        assert!(err.contains("f line 1"), "{err}");
        assert!(parse_prompts("\n\n", "f").is_err());
    }

    #[test]
    fn shipped_set_is_well_formed() {
        let prompts = parse_prompts(DEFAULT_PROMPTS_JSONL, DEFAULT_PROMPTS_PATH).unwrap();
        assert!(prompts.len() >= 50, "{}", prompts.len());
        for p in &prompts {
            let n = p.approx_tokens.unwrap();
            assert!((256..=4096).contains(&n), "{}: {n}", p.id);
        }
        assert!(DEFAULT_PROMPTS_JSONL.len() < 1_000_000);
    }
}
