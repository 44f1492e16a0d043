//! `sdtp profile`: a llama-bench style harness that times the unpruned baseline and SDTP
//! schedules through the same prefill and decode code, and reports medians and spread as a
//! table, markdown, CSV or JSON (schema in docs/profile.md).
//!
//! - [`harness`]: the timing loop (warm-up, ABBA repetitions, device synchronisation);
//! - [`prompt`]: prompts of exactly N tokens cut from the shipped natural-language text;
//! - [`flops`]: the analytic FLOP count behind the "FLOP-ideal" speedup;
//! - [`memory`]: peak memory per run;
//! - [`summary`]: median, min, max, mean and standard deviation;
//! - [`report`], [`table`], [`plot`]: the JSON/CSV report, the human tables, the SVG plot.
//!
//! This module measures; it never changes what the model computes.

pub mod flops;
pub mod harness;
pub mod memory;
pub mod plot;
pub mod prompt;
pub mod report;
pub mod summary;
pub mod table;
