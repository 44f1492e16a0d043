//! sdtp: long-context Llama-family inference with Saliency-driven Dynamic Token Pruning
//! (SDTP, arXiv 2504.04514) on candle.
//!
//! The library in layers; a module uses only those below it (docs/architecture.md):
//!
//! ```text
//! eval  profile  train        the jobs (the binary's `cli` wires them to arguments)
//! report  metrics  corpus     what the jobs share (and `plot_style`)
//! prefill  generate           the forward with pruning; decoding
//! prune  prune_log            schedules, scorers, selection; the per-layer log
//! model                       config, loading, weights, the Llama forward and its ops
//! device                      CPU/CUDA selection and synchronisation
//! ```
//!
//! One request: [`model::load`] gives a model and its tokenizer; [`prefill::prefill_with_pruning`]
//! runs the layers, pruning after those the schedule names; [`generate::generate`] decodes
//! from its cache. The unpruned baseline is the same path with an empty schedule.

/// The shipped text and the one JSONL document parser (shared by the jobs).
pub mod corpus;
pub mod device;
pub mod eval;
pub mod generate;
/// KL, arg max, top-k, medians and spread under one NaN rule; prefill FLOPs (shared by the jobs).
pub mod metrics;
pub mod model;
/// What the SVG plots share: size, palette, error, a line-with-points series.
pub mod plot_style;
pub mod prefill;
pub mod profile;
pub mod prune;
/// The per-layer prune log (`debug/prune_log.jsonl`): its record and append-only writer.
pub mod prune_log;
/// Run provenance, contenders and their seed rule, the one atomic writer (shared by the jobs).
pub mod report;
/// The CUDA decode step with its lengths on the device, replayed from a CUDA graph.
pub mod resident_decode;
pub mod train;
