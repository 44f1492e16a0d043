//! The RULER tasks `sdtp eval ruler` runs, named and configured as in RULER's
//! `scripts/synthetic.yaml`, with the tokens RULER generates for each and the score it uses.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::score::Metric;

/// One synthetic task; in JSON, its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    NiahSingle1,
    NiahSingle2,
    NiahSingle3,
    NiahMultikey1,
    NiahMultikey2,
    NiahMultikey3,
    NiahMultivalue,
    NiahMultiquery,
    Vt,
    Cwe,
    Fwe,
}

/// RULER's QA tasks, which need SQuAD and HotpotQA and so are not offered.
const NOT_OFFLINE: [&str; 2] = ["qa_1", "qa_2"];

impl Task {
    /// Every task, in RULER's order (the default `--tasks`).
    pub const ALL: [Task; 11] = [
        Task::NiahSingle1,
        Task::NiahSingle2,
        Task::NiahSingle3,
        Task::NiahMultikey1,
        Task::NiahMultikey2,
        Task::NiahMultikey3,
        Task::NiahMultivalue,
        Task::NiahMultiquery,
        Task::Vt,
        Task::Cwe,
        Task::Fwe,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::NiahSingle1 => "niah_single_1",
            Self::NiahSingle2 => "niah_single_2",
            Self::NiahSingle3 => "niah_single_3",
            Self::NiahMultikey1 => "niah_multikey_1",
            Self::NiahMultikey2 => "niah_multikey_2",
            Self::NiahMultikey3 => "niah_multikey_3",
            Self::NiahMultivalue => "niah_multivalue",
            Self::NiahMultiquery => "niah_multiquery",
            Self::Vt => "vt",
            Self::Cwe => "cwe",
            Self::Fwe => "fwe",
        }
    }

    /// RULER's generator family (the `task` of synthetic.yaml).
    pub fn family(self) -> &'static str {
        match self {
            Self::Vt => "variable_tracking",
            Self::Cwe => "common_words_extraction",
            Self::Fwe => "freq_words_extraction",
            _ => "niah",
        }
    }

    /// What the task asks, for reports and docs.
    pub fn description(self) -> &'static str {
        match self {
            Self::NiahSingle1 => "one word key → 7-digit number, in repeated noise sentences",
            Self::NiahSingle2 => "one word key → 7-digit number, in prose",
            Self::NiahSingle3 => "one word key → UUID, in prose",
            Self::NiahMultikey1 => "one of 4 word keys (3 distractors) → 7-digit number, in prose",
            Self::NiahMultikey2 => "one word key → 7-digit number, haystack made of needles",
            Self::NiahMultikey3 => "one UUID key → UUID, haystack made of UUID needles",
            Self::NiahMultivalue => "one word key with 4 numbers, all to recall, in prose",
            Self::NiahMultiquery => "4 word keys queried, one number each, in prose",
            Self::Vt => "variable tracking: 1 chain of 4 hops in noise; name every variable",
            Self::Cwe => "common words extraction: the 10 most common words of a numbered list",
            Self::Fwe => "frequent words extraction: the 3 most frequent coded words (Zipf 2.0)",
        }
    }

    /// Tokens RULER generates for the answer (constants.py's `tokens_to_generate`).
    pub fn new_tokens(self) -> usize {
        match self.family() {
            "variable_tracking" => 30,
            "common_words_extraction" => 120,
            "freq_words_extraction" => 50,
            _ => 128,
        }
    }

    /// RULER's score for the task: string_match_all for every synthetic task.
    pub fn metric(self) -> Metric {
        Metric::StringMatchAll
    }

    /// A stable number for seeds (FNV-1a of the name), so a task's samples do not depend on
    /// which other tasks run or in what order.
    pub fn code(self) -> u64 {
        self.name().bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// The comma-separated list of every name, for error messages.
    pub fn all_names() -> String {
        Self::ALL.map(Task::name).join(", ")
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Task {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Some(task) = Self::ALL.into_iter().find(|t| t.name() == s) {
            return Ok(task);
        }
        if NOT_OFFLINE.contains(&s) {
            bail!(
                "RULER task {s} needs a QA dataset (SQuAD / HotpotQA) that is not shipped; tasks: {}",
                Self::all_names()
            );
        }
        bail!("unknown RULER task {s:?}; tasks: {}", Self::all_names())
    }
}

impl Serialize for Task {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Task {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for task in Task::ALL {
            assert_eq!(task.name().parse::<Task>().unwrap(), task);
            let json = serde_json::to_string(&task).unwrap();
            assert_eq!(json, format!("\"{}\"", task.name()));
            assert_eq!(serde_json::from_str::<Task>(&json).unwrap(), task);
        }
        let err = "niah_single_9".parse::<Task>().unwrap_err().to_string();
        assert!(
            err.contains("niah_single_1, niah_single_2") && err.contains("fwe"),
            "{err}"
        );
        let qa = "qa_1".parse::<Task>().unwrap_err().to_string();
        assert!(qa.contains("SQuAD"), "{qa}");
    }

    #[test]
    fn ruler_settings() {
        assert_eq!(Task::NiahMultikey3.new_tokens(), 128);
        assert_eq!(Task::Vt.new_tokens(), 30);
        assert_eq!(Task::Cwe.new_tokens(), 120);
        assert_eq!(Task::Fwe.new_tokens(), 50);
        assert!(Task::ALL
            .iter()
            .all(|t| t.metric() == Metric::StringMatchAll));
        let mut codes: Vec<u64> = Task::ALL.iter().map(|t| t.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Task::ALL.len());
    }
}
