//! RULER's two scores (`scripts/eval/synthetic/constants.py`), per sample and over a set:
//! a reference "is found" when it is a substring of the prediction, both lowercased.
//!
//! - `string_match_all`: the fraction of the sample's references found; the set's score is
//!   the mean over samples × 100. Partial recall earns partial credit.
//! - `string_match_part`: 1 when any reference is found, else 0; mean × 100. RULER uses it
//!   only for its QA tasks (not implemented here: they need SQuAD and HotpotQA).
//!
//! RULER first strips the prediction and turns control characters into newlines; neither
//! changes whether a reference (which has none) is a substring, so that step is left out.

use serde::{Deserialize, Serialize};

/// Which of RULER's scores a task uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    StringMatchAll,
    StringMatchPart,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StringMatchAll => "string_match_all",
            Self::StringMatchPart => "string_match_part",
        }
    }

    /// One sample's credit in [0, 1].
    pub fn credit(self, prediction: &str, references: &[String]) -> f64 {
        if references.is_empty() {
            return 0.0;
        }
        let prediction = prediction.to_lowercase();
        let found = references
            .iter()
            .filter(|r| prediction.contains(&r.to_lowercase()))
            .count();
        match self {
            Self::StringMatchAll => found as f64 / references.len() as f64,
            Self::StringMatchPart => f64::from(u8::from(found > 0)),
        }
    }

    /// The score of a set of (prediction, references) pairs: mean credit × 100 (0 when
    /// empty).
    pub fn score<'a>(self, samples: impl IntoIterator<Item = (&'a str, &'a [String])>) -> f64 {
        let (mut sum, mut n) = (0.0, 0usize);
        for (prediction, references) in samples {
            sum += self.credit(prediction, references);
            n += 1;
        }
        if n == 0 {
            0.0
        } else {
            sum / n as f64 * 100.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Metric::{StringMatchAll as All, StringMatchPart as Part};

    fn refs(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn credit_by_hand() {
        let four = refs(&["1234567", "Apple", "kiwi", "pear"]);
        // Case-insensitive both ways, substrings count.
        assert_eq!(All.credit(" 1234567, APPLE and a Kiwifruit.", &four), 0.75);
        assert_eq!(Part.credit(" 1234567, APPLE and a Kiwifruit.", &four), 1.0);
        assert_eq!(All.credit("all four: pear kiwi apple 1234567", &four), 1.0);
        assert_eq!(All.credit(" 123456 7", &four), 0.0);
        assert_eq!(Part.credit(" 123456 7", &four), 0.0);
        // An empty prediction earns nothing, nor does a sample without references.
        assert_eq!(All.credit("", &four), 0.0);
        assert_eq!(Part.credit("", &four), 0.0);
        assert_eq!(All.credit("anything", &[]), 0.0);
    }

    #[test]
    fn set_scores_are_mean_credit_times_100() {
        let a = refs(&["alpha", "beta"]);
        let b = refs(&["gamma"]);
        let preds = [("alpha only", a.as_slice()), ("GAMMA", b.as_slice())];
        // (0.5 + 1) / 2 × 100.
        assert_eq!(All.score(preds), 75.0);
        // (1 + 1) / 2 × 100.
        assert_eq!(Part.score(preds), 100.0);
        assert_eq!(All.score([("", a.as_slice())]), 0.0);
        assert_eq!(All.score(std::iter::empty()), 0.0);
        assert_eq!(All.as_str(), "string_match_all");
        assert_eq!(
            serde_json::to_string(&Part).unwrap(),
            "\"string_match_part\""
        );
    }
}
