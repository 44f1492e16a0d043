//! sdtp: long-context Llama-family inference with Saliency-driven Dynamic Token Pruning
//! (SDTP, arXiv 2504.04514) on candle.

pub mod cli;
pub mod device;
pub mod eval;
pub mod generate;
pub mod model;
pub mod prefill;
pub mod profile;
pub mod prune;
pub mod stats;
pub mod train;
