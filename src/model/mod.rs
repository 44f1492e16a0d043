//! The Llama-family model and everything needed to load it.

pub mod attention;
pub mod cache;
pub mod config;
#[cfg(feature = "cuda")]
mod cuda_kernels;
#[cfg(feature = "cuda")]
pub mod cudnn;
#[cfg(feature = "cuda")]
pub mod flash;
pub mod fused;
pub mod llama;
pub mod load;
pub mod proj;
pub mod quant;
pub mod rope;
pub mod text;
pub mod tokenizer;
pub mod weights;
