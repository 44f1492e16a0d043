//! `sdtp profile`: a llama-bench style harness that times the unpruned baseline and SDTP
//! schedules through the same prefill and decode code, and reports medians and spread as a
//! table, markdown, CSV or JSON (schema in docs/profile.md).
//!
//! - [`harness`]: the timing loop (warm-up, ABBA repetitions, device synchronisation);
//! - [`prompt`]: prompts of exactly N tokens cut from the shipped natural-language text;
//! - [`memory`]: peak memory per run;
//! - [`report`], [`table`], [`plot`]: the JSON/CSV report, the human tables, the SVG plot.
//!
//! What it shares with `eval` and `train` lives below it: provenance, contenders and the
//! writer in `crate::report`; the summaries (median, min, max, mean, sd) and the analytic
//! FLOP count behind the "FLOP-ideal" speedup in `crate::metrics`.
//!
//! This module measures; it never changes what the model computes.

pub mod harness;
pub mod memory;
pub mod plot;
pub mod prompt;
pub mod report;
pub mod table;
