//! The Llama-family model and everything needed to load it; knows nothing of pruning.
//!
//! - [`config`]: `ModelConfig` from config.json, GGUF metadata (read through `gguf_meta`) or
//!   a `synthetic:` preset, validated before any tensor exists;
//! - [`load`]: what `--model` names and `--weights` asks for, and the loaded model with its
//!   tokenizer ([`tokenizer`], [`text`]: text in and out, chat template, sentence ends);
//! - [`weights`], [`quant`], [`proj`]: where the tensors come from (GGUF, safetensors,
//!   synthetic), quantized blocks kept as stored, and a projection that is dense or quantized;
//! - [`llama`]: embeddings, decoder layers (`attend`, then `feed_forward`), norm and lm_head;
//!   [`cache`]: the per-layer K/V of exactly the tokens each layer saw;
//! - the ops: [`attention`] (with the tail scores the attention scorer reads), [`rope`] at
//!   explicit positions, [`cpu_attention`] (the CPU's tiled causal attention), [`cpu_qmatmul`]
//!   (q4_0/q8_0 products on AVX-512 VNNI), [`cpu_q4x8`] (large q4_0 matrices regrouped eight rows
//!   at a time for the decode step), [`cpu_dequant`] (their expansion for prefill GEMMs), [`fused`]
//!   CPU/CUDA kernels, `flash`/`cudnn` attention on CUDA,
//!   `decode_attention` (the decode step with its lengths on the device), and
//!   [`kernels`], the leaf switch between fused and differentiable kernels they all read;
//! - [`synthetic_gguf`]: a synthetic model written as a GGUF file, for peers to run.

pub mod attention;
pub mod cache;
pub mod config;
pub mod cpu_attention;
pub mod cpu_dequant;
pub mod cpu_q4x8;
pub mod cpu_qmatmul;
#[cfg(feature = "cuda")]
mod cuda_kernels;
#[cfg(feature = "cuda")]
pub mod cudnn;
#[cfg(feature = "cuda")]
pub mod decode_attention;
#[cfg(feature = "cuda")]
pub mod flash;
pub mod fused;
mod gguf_meta;
pub mod kernels;
pub mod llama;
pub mod load;
pub mod proj;
pub mod quant;
pub mod rope;
pub mod synthetic_gguf;
pub mod text;
pub mod tokenizer;
pub mod weights;
