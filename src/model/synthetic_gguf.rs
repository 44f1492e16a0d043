//! A synthetic model written out as a GGUF file, so that another runner (llama.cpp's
//! `llama-bench`) can be measured on the very weights sdtp runs: the same random blocks
//! `synthetic:<preset> --quant <type>` builds in memory, in llama.cpp's layout.
//!
//! The file is a plain `llama`-architecture GGUF: llama.cpp's tensor names, its Q/K row order
//! (sdtp's loader undoes it, so loading the file gives back the in-memory synthetic model),
//! f32 norms at 1, and a byte-level vocabulary padded to the preset's size (256 byte tokens, a
//! control token for BOS/EOS, one merge, and unused fillers), which both tools can load.
//! Weights are meaningless; the file exists for speed and memory measurements.

use std::io::{BufWriter, Seek, Write};

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::config::{Architecture, ModelConfig};
use super::quant::{check_block_widths, rope_source_row, type_name, HostBlocks, QuantSource};
use super::weights::{hf_to_gguf_name, SyntheticQuantWeights};

/// The id of the one control token (BOS and EOS): right after the 256 byte tokens.
const CONTROL_ID: usize = 256;
/// llama.cpp's `llama_token_type` values written for the vocabulary.
const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;
const TYPE_UNUSED: i32 = 5;

/// What was written, for the caller's one-line summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenGguf {
    pub tensors: usize,
    pub bytes: u64,
}

/// Checks that `preset` can be written with `quant` blocks (before any weight is made).
pub fn check_exportable(preset: &str, quant: GgmlDType) -> Result<ModelConfig> {
    let config = ModelConfig::synthetic(preset)?;
    if config.attention_bias || config.architecture == Architecture::Qwen2 {
        bail!(
            "synthetic:{preset} has q/k/v biases (Qwen2), which sdtp reads only from the `llama` GGUF architecture without biases; export a llama-shaped preset (llama2-7b, llama3-8b, mistral-7b, smollm2-135m, tiny)"
        );
    }
    check_block_widths(
        quant,
        &[
            config.hidden_size,
            config.intermediate_size,
            config.num_attention_heads * config.head_dim,
        ],
    )?;
    if config.vocab_size <= CONTROL_ID + 1 {
        bail!(
            "synthetic:{preset} has a vocabulary of {} tokens; the file's byte-level vocabulary needs more than {}",
            config.vocab_size,
            CONTROL_ID + 1
        );
    }
    Ok(config)
}

/// Writes `synthetic:<preset>` with `quant` blocks (seeded by `seed`, as `--seed` seeds the
/// in-memory model) to `out`.
pub fn write_synthetic_gguf(
    preset: &str,
    quant: GgmlDType,
    seed: u64,
    out: &mut (impl Write + Seek),
) -> Result<WrittenGguf> {
    let config = check_exportable(preset, quant)?;
    let source = SyntheticQuantWeights { seed, dtype: quant };
    let tensors = tensors(&config, &source)?;
    let metadata = metadata(&config, preset, quant);
    let metadata_refs: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut writer = BufWriter::with_capacity(1 << 22, out);
    gguf_file::write(&mut writer, &metadata_refs, &tensor_refs)
        .context("cannot write the GGUF file")?;
    writer.flush()?;
    let bytes = writer.stream_position()?;
    Ok(WrittenGguf {
        tensors: tensors.len(),
        bytes,
    })
}

/// Every tensor of the model under its llama.cpp name (the loader's own HF ↔ GGUF map), in
/// the order llama.cpp's converter writes them.
fn tensors(config: &ModelConfig, source: &SyntheticQuantWeights) -> Result<Vec<(String, QTensor)>> {
    let h = config.hidden_size;
    let q_rows = config.num_attention_heads * config.head_dim;
    let kv_rows = config.num_key_value_heads * config.head_dim;
    let i = config.intermediate_size;
    // (HF name, rows, cols, heads whose rows RoPE pairs); rows 0 = a norm of width `h`.
    let mut specs: Vec<(String, usize, usize, Option<usize>)> = vec![(
        "model.embed_tokens.weight".into(),
        config.vocab_size,
        h,
        None,
    )];
    for l in 0..config.num_hidden_layers {
        let layer = [
            ("input_layernorm.weight", 0, 0, None),
            (
                "self_attn.q_proj.weight",
                q_rows,
                h,
                Some(config.num_attention_heads),
            ),
            (
                "self_attn.k_proj.weight",
                kv_rows,
                h,
                Some(config.num_key_value_heads),
            ),
            ("self_attn.v_proj.weight", kv_rows, h, None),
            ("self_attn.o_proj.weight", h, q_rows, None),
            ("post_attention_layernorm.weight", 0, 0, None),
            ("mlp.gate_proj.weight", i, h, None),
            ("mlp.up_proj.weight", i, h, None),
            ("mlp.down_proj.weight", h, i, None),
        ];
        specs.extend(
            layer
                .into_iter()
                .map(|(name, r, c, heads)| (format!("model.layers.{l}.{name}"), r, c, heads)),
        );
    }
    specs.push(("model.norm.weight".into(), 0, 0, None));
    if !config.tie_word_embeddings {
        specs.push(("lm_head.weight".into(), config.vocab_size, h, None));
    }
    specs
        .into_iter()
        .map(|(hf, rows, cols, rope_heads)| {
            let gguf = hf_to_gguf_name(&hf).with_context(|| format!("no GGUF name for {hf}"))?;
            let tensor = if rows == 0 {
                let ones = Tensor::ones(h, candle_core::DType::F32, &Device::Cpu)?;
                QTensor::quantize(&ones, GgmlDType::F32)?
            } else {
                let blocks = source
                    .blocks(&hf, rows, cols)?
                    .with_context(|| format!("no random blocks for {hf}"))?;
                let blocks = match rope_heads {
                    Some(heads) => to_llama_cpp_rope_order(&blocks, rows / heads),
                    None => blocks,
                };
                blocks.to_qtensor(&Device::Cpu)?
            };
            Ok((gguf, tensor))
        })
        .collect()
}

/// HF row order → llama.cpp's: the inverse of the map the loader applies
/// (`rope_source_row`), so that loading the file restores the HF order exactly.
fn to_llama_cpp_rope_order(blocks: &HostBlocks, head_dim: usize) -> HostBlocks {
    let mut hf_row_of = vec![0usize; blocks.rows];
    for hf_row in 0..blocks.rows {
        hf_row_of[rope_source_row(hf_row, head_dim)] = hf_row;
    }
    blocks.permute_rows(|gguf_row| hf_row_of[gguf_row])
}

/// The `llama` architecture keys both sdtp and llama.cpp read, and the byte-level vocabulary.
fn metadata(config: &ModelConfig, preset: &str, quant: GgmlDType) -> Vec<(&'static str, Value)> {
    let u32v = |v: usize| Value::U32(v as u32);
    let (tokens, types) = vocabulary(config.vocab_size);
    vec![
        ("general.architecture", Value::String("llama".into())),
        (
            "general.name",
            Value::String(format!(
                "sdtp synthetic:{preset} {} (random weights)",
                type_name(quant)
            )),
        ),
        ("llama.context_length", u32v(config.max_position_embeddings)),
        ("llama.embedding_length", u32v(config.hidden_size)),
        ("llama.block_count", u32v(config.num_hidden_layers)),
        ("llama.feed_forward_length", u32v(config.intermediate_size)),
        (
            "llama.attention.head_count",
            u32v(config.num_attention_heads),
        ),
        (
            "llama.attention.head_count_kv",
            u32v(config.num_key_value_heads),
        ),
        ("llama.attention.key_length", u32v(config.head_dim)),
        ("llama.attention.value_length", u32v(config.head_dim)),
        ("llama.rope.dimension_count", u32v(config.head_dim)),
        ("llama.rope.freq_base", Value::F32(config.rope_theta as f32)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(config.rms_norm_eps as f32),
        ),
        ("llama.vocab_size", u32v(config.vocab_size)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("default".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        // One merge, so the list is a list of strings for every reader; text encodes to
        // about one token per byte.
        (
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("\u{120} t".into())]),
        ),
        ("tokenizer.ggml.bos_token_id", u32v(CONTROL_ID)),
        ("tokenizer.ggml.eos_token_id", u32v(CONTROL_ID)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ]
}

/// `vocab_size` token strings and types: GPT-2's 256 byte symbols (ids = byte values), the
/// control token, the one merged token, then unused fillers.
fn vocabulary(vocab_size: usize) -> (Vec<String>, Vec<i32>) {
    let mut tokens: Vec<String> = (0u8..=255).map(|b| byte_symbol(b).to_string()).collect();
    let mut types = vec![TYPE_NORMAL; 256];
    tokens.push("<|endoftext|>".into());
    types.push(TYPE_CONTROL);
    tokens.push("\u{120}t".into());
    types.push(TYPE_NORMAL);
    for i in tokens.len()..vocab_size {
        tokens.push(format!("<|synthetic_{i}|>"));
        types.push(TYPE_UNUSED);
    }
    (tokens, types)
}

/// GPT-2's byte → printable character map (`bytes_to_unicode`): printable Latin-1 bytes stand
/// for themselves, the rest take the code points from 256 on, in byte order.
fn byte_symbol(b: u8) -> char {
    let printable = |c: u8| (b'!'..=b'~').contains(&c) || (0xA1..=0xAC).contains(&c) || c >= 0xAE;
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&c| !printable(c)).count() as u32;
    // 256 + rank ≤ 323: always a valid scalar value.
    char::from_u32(256 + rank).unwrap_or(char::REPLACEMENT_CHARACTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_symbols_follow_gpt2() {
        assert_eq!(byte_symbol(b' '), '\u{120}');
        assert_eq!(byte_symbol(b'\n'), '\u{10A}');
        assert_eq!(byte_symbol(b'A'), 'A');
        assert_eq!(byte_symbol(0), '\u{100}');
        let distinct: std::collections::HashSet<char> = (0u8..=255).map(byte_symbol).collect();
        assert_eq!(distinct.len(), 256);
    }

    #[test]
    fn rope_order_round_trips_through_the_loader_map() {
        let head_dim = 8;
        let rows = 2 * head_dim;
        let blocks = HostBlocks {
            dtype: GgmlDType::Q8_0,
            rows,
            cols: 32,
            bytes: (0..rows).flat_map(|r| vec![r as u8; 34]).collect(),
        };
        let written = to_llama_cpp_rope_order(&blocks, head_dim);
        let loaded = written.permute_rows(|i| rope_source_row(i, head_dim));
        assert_eq!(loaded.bytes, blocks.bytes);
        assert_ne!(written.bytes, blocks.bytes);
    }

    #[test]
    fn qwen2_and_misfit_blocks_are_refused_before_any_weight() {
        let err = check_exportable("qwen2-7b", GgmlDType::Q4_0).unwrap_err();
        assert!(err.to_string().contains("biases"), "{err}");
        let err = check_exportable("smollm2-135m", GgmlDType::Q4K).unwrap_err();
        assert!(err.to_string().contains("multiple of 256"), "{err}");
    }
}
