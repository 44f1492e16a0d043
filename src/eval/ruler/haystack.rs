//! The haystacks RULER hides its needles in, and where the needles go.
//!
//! - noise: RULER's noise line, "The grass is green. … There and back again.", repeated one
//!   per line. Its size is counted in sentences, so a prompt can be filled to within one
//!   sentence (≈ 5 tokens) rather than one line (≈ 22): whole lines, the last one possibly
//!   stopping after any of its five sentences.
//! - essay (RULER: Paul Graham's essays, not shipped): the shipped book, its whitespace
//!   collapsed, cut to its first `n` words (repeated from the start if `n` is larger, as
//!   RULER does), split into sentences; needles go between sentences.
//! - needle: lines that are themselves needles (built by the NIAH generator).
//!
//! Needles sit at depths in [0, 1]: a needle at depth d goes before unit ⌊d·units⌋ (RULER's
//! `int(len(sentences) * depth)`), depth 1 after the last unit.

use anyhow::Result;

use crate::corpus::shipped_text;

/// RULER's noise haystack line.
pub const NOISE: &str =
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.";

/// RULER's needle depths: 40 evenly spaced percentages, 0 to 100, rounded
/// (`np.round(np.linspace(0, 100, num=40))`), as fractions.
pub fn ruler_depths() -> Vec<f64> {
    (0..40)
        .map(|k| (100.0 * k as f64 / 39.0).round() / 100.0)
        .collect()
}

/// The depth of sample `index`'s needle: 0, 1, ½, ¼, ¾, ⅛, ⅝, ⅜, ⅞, … (the ends, then the
/// van der Corput sequence). The first N depths are exactly i/(N−1), i = 0…N−1, whenever
/// N−1 is a power of two, no gap between neighbours is ever over twice 1/(N−1), and a
/// sample's depth does not depend on how many samples run.
pub fn sample_depth(index: usize) -> f64 {
    match index {
        0 => 0.0,
        1 => 1.0,
        _ => {
            // Radical inverse of index − 1 in base 2.
            let (mut n, mut depth, mut place) = (index - 1, 0.0, 0.5);
            while n > 0 {
                if n & 1 == 1 {
                    depth += place;
                }
                n >>= 1;
                place /= 2.0;
            }
            depth
        }
    }
}

/// The first `sentences` sentences of the noise haystack, as lines.
pub fn noise_lines(sentences: usize) -> Vec<String> {
    let parts: Vec<&str> = NOISE.split_inclusive(". ").map(str::trim).collect();
    let mut lines = vec![NOISE.to_string(); sentences / parts.len()];
    let rest = sentences % parts.len();
    if rest > 0 {
        lines.push(parts[..rest].join(" "));
    }
    lines
}

/// Word abbreviations after which a full stop does not end a sentence (the book's own:
/// "Mr. Fogg", "No. 7, Saville Row", …).
const ABBREVIATIONS: [&str; 16] = [
    "Mr", "Mrs", "Messrs", "Mme", "Mlle", "Dr", "St", "No", "Esq", "Capt", "Col", "Gen", "Lieut",
    "Rev", "Sr", "Jr",
];

/// Whether `word` ends a sentence: it ends in ".", "!" or "?" (before any closing quotes or
/// brackets) and is not an abbreviation or an initial ("J."). A stand-in for the NLTK Punkt
/// tokenizer RULER uses.
fn ends_sentence(word: &str) -> bool {
    let bare = word.trim_end_matches(['"', '\'', ')', ']', '’', '”']);
    let Some(stem) = bare.strip_suffix(['.', '!', '?']) else {
        return false;
    };
    if !bare.ends_with('.') {
        return true;
    }
    let stem = stem.trim_start_matches(['"', '\'', '(', '[', '‘', '“']);
    let initial = stem.len() == 1 && stem.chars().all(|c| c.is_ascii_uppercase());
    !(initial || ABBREVIATIONS.contains(&stem))
}

/// Groups words into sentences (each the words joined by one space).
pub fn sentences(words: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, w) in words.iter().enumerate() {
        if ends_sentence(w) {
            out.push(words[start..=i].join(" "));
            start = i + 1;
        }
    }
    if start < words.len() {
        out.push(words[start..].join(" "));
    }
    out
}

/// The text the haystacks are made of, loaded once per run.
pub struct Corpus {
    /// The shipped book's words, in order.
    pub prose: Vec<String>,
    /// The shipped word list (keys, common words).
    pub words: Vec<&'static str>,
}

impl Corpus {
    pub fn shipped() -> Result<Self> {
        Ok(Self {
            prose: shipped_text()?
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            words: super::vocab::words(),
        })
    }

    /// The essay haystack of `words` words, as sentences.
    pub fn essay(&self, words: usize) -> Vec<String> {
        let cut: Vec<&str> = self
            .prose
            .iter()
            .cycle()
            .take(words)
            .map(String::as_str)
            .collect();
        sentences(&cut)
    }
}

/// `units` with each needle (depth, text) inserted before unit ⌊depth·units⌋; needles at the
/// same place keep their order.
pub fn insert_at_depths(units: Vec<String>, needles: Vec<(f64, String)>) -> Vec<String> {
    let n = units.len();
    let mut placed: Vec<(usize, String)> = needles
        .into_iter()
        .map(|(depth, text)| {
            (
                ((depth.clamp(0.0, 1.0) * n as f64).floor() as usize).min(n),
                text,
            )
        })
        .collect();
    placed.sort_by_key(|(at, _)| *at);
    let mut out = Vec::with_capacity(n + placed.len());
    let mut next = placed.into_iter().peekable();
    for (i, unit) in units.into_iter().enumerate() {
        while let Some((_, text)) = next.next_if(|(at, _)| *at == i) {
            out.push(text);
        }
        out.push(unit);
    }
    out.extend(next.map(|(_, text)| text));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_spread_evenly_whatever_the_sample_count() {
        let first = |n: usize| -> Vec<f64> {
            let mut d: Vec<f64> = (0..n).map(sample_depth).collect();
            d.sort_by(f64::total_cmp);
            d
        };
        assert_eq!(first(2), [0.0, 1.0]);
        assert_eq!(first(3), [0.0, 0.5, 1.0]);
        assert_eq!(first(5), [0.0, 0.25, 0.5, 0.75, 1.0]);
        let nine: Vec<f64> = (0..9).map(|i| i as f64 / 8.0).collect();
        assert_eq!(first(9), nine);
        for n in 2..=40 {
            let d = first(n);
            assert_eq!((d[0], d[n - 1]), (0.0, 1.0));
            let gap = d.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
            assert!(gap <= 2.0 / (n - 1) as f64 + 1e-12, "{n}: {gap}");
            assert!(d.windows(2).all(|w| w[1] > w[0]), "{n}: distinct");
        }
        let ruler = ruler_depths();
        assert_eq!(ruler.len(), 40);
        assert_eq!(
            (ruler[0], ruler[1], ruler[20], ruler[39]),
            (0.0, 0.03, 0.51, 1.0)
        );
    }

    #[test]
    fn noise_is_counted_in_sentences() {
        assert!(noise_lines(0).is_empty());
        assert_eq!(noise_lines(5), [NOISE]);
        assert_eq!(
            noise_lines(7),
            [NOISE, "The grass is green. The sky is blue."]
        );
        assert_eq!(noise_lines(11).len(), 3);
    }

    #[test]
    fn sentences_split_as_punkt_would_on_the_book() {
        let text = "Mr. Phileas Fogg lived, in 1872, at No. 7, Saville Row. He was \"a polished man!\" Was he? J. Smith came. The end";
        let words: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(
            sentences(&words),
            [
                "Mr. Phileas Fogg lived, in 1872, at No. 7, Saville Row.",
                "He was \"a polished man!\"",
                "Was he?",
                "J. Smith came.",
                "The end"
            ]
        );
        let corpus = Corpus::shipped().unwrap();
        let essay = corpus.essay(200);
        assert!(essay[0].starts_with("Mr. Phileas Fogg lived, in 1872, at No. 7, Saville Row"));
        let words: usize = essay.iter().map(|s| s.split(' ').count()).sum();
        assert_eq!(words, 200);
        // Longer than the book: it repeats.
        assert!(corpus.essay(corpus.prose.len() + 5).len() > 1);
    }

    #[test]
    fn needles_go_before_the_unit_at_their_depth() {
        let units: Vec<String> = (0..4).map(|i| format!("u{i}")).collect();
        let out = insert_at_depths(
            units,
            vec![
                (1.0, "end".into()),
                (0.5, "mid".into()),
                (0.0, "start".into()),
                (0.5, "mid2".into()),
                (0.3, "q".into()),
            ],
        );
        assert_eq!(
            out,
            ["start", "u0", "q", "u1", "mid", "mid2", "u2", "u3", "end"]
        );
        assert_eq!(insert_at_depths(vec![], vec![(0.5, "x".into())]), ["x"]);
    }
}
