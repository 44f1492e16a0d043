//! `sdtp eval`: does pruning keep the answers? Each evaluation runs the unpruned baseline and
//! the pruned contenders through the same prefill and decode code and compares what they
//! produce; none of them times anything (see `profile` for that).
//!
//! - [`agreement`]: first-token agreement, KL, top-k overlap and identical greedy
//!   continuation on a prompt set ([`prompts`]: the JSONL set and its generator);
//! - [`perplexity`]: perplexity of a continuation after a pruned prefill of the context;
//! - [`passkey`]: llama.cpp-style synthetic passkey retrieval over lengths and depths;
//! - [`ruler`]: NVIDIA RULER's synthetic tasks (needles, variable tracking, word counts);
//! - [`sweep`]: keep ratios × scorers → the speed–fidelity points and their Pareto frontier
//!   ([`plot`]: the SVG);
//! - [`forward`]: the model runs they need (the metrics are the shared `crate::metrics`);
//! - [`report`], [`table`]: the JSON reports (docs/eval.md) and the stdout tables;
//! - [`tokenize`]: prompts and texts as fed to the model (chat template, limits, checks);
//!   [`runs`]: each run from a loaded model to its finished report.

pub mod agreement;
pub mod evidence;
pub mod forward;
pub mod passkey;
pub mod perplexity;
pub mod plot;
pub mod prompts;
pub mod report;
pub mod ruler;
pub mod runs;
pub mod sweep;
pub mod table;
pub mod tokenize;
