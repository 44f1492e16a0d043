//! `sdtp eval ruler`: NVIDIA RULER's synthetic long-context tasks (arXiv 2404.06654), built
//! offline with the model's own tokenizer and run baseline against pruned.
//!
//! RULER's generators (`scripts/data/synthetic/*.py`) are followed as closely as an offline
//! run allows: the same templates and answer prefixes, needles, value kinds, haystack search
//! and scores; Paul Graham's essays are replaced by the shipped book and the wonderwords
//! lists by a word list derived from it. docs/eval.md lists every departure.
//!
//! - [`task`]: the task names and their RULER settings; [`score`]: string_match_all / part;
//! - [`templates`]: RULER's prompt templates; [`vocab`]: keys, values and the word list;
//!   [`haystack`]: noise, prose and needle depths;
//! - [`niah`], [`vt`], [`cwe`], [`fwe`]: the generators, behind [`draft::Generator`];
//! - [`fit`]: the haystack-size search; [`sample`]: a sample built and tokenized;
//! - [`evidence`]: how much of the answer a pruned prefill kept;
//! - [`run`]: the model runs and the summaries; [`report`]: the JSON report; [`plot`]: its
//!   SVG.

pub mod cwe;
pub mod draft;
pub mod fit;
pub mod fwe;
pub mod haystack;
pub mod niah;
pub mod plot;
pub mod report;
pub mod run;
pub mod sample;
pub mod score;
pub mod task;
pub mod templates;
pub mod vocab;
pub mod vt;
