//! Quantized weights on the real SmolLM2 GGUF against the dequantised f32 oracle: the same
//! next tokens within quantisation noise, and `--weights`/`--quant` validated before load.

mod common;

use candle_core::{DType, Device};
use sdtp::eval::forward::{greedy_continuation, last_logits, prefill};
use sdtp::eval::prompts::load_prompts;
use sdtp::metrics::{argmax, kl_divergence};
use sdtp::model::load::{load_model_with, LoadOptions, LoadedModel, ModelSource};
use sdtp::model::quant::{SyntheticQuant, WeightsMode, WeightsRequest};
use sdtp::prune::schedule::PruneSchedule;

fn load(weights: WeightsRequest) -> LoadedModel {
    let options = LoadOptions {
        weights,
        ..LoadOptions::dequantized(DType::F32, 0)
    };
    load_model_with(
        &ModelSource::Gguf(common::real_model_path()),
        &Device::Cpu,
        &options,
    )
    .expect("real model loads")
}

/// Shipped agreement prompts, each cut to its first `max_tokens` tokens (long enough for the
/// prefill to take the many-row kernels, short enough for a test).
fn prompts(model: &LoadedModel, count: usize, max_tokens: usize) -> Vec<Vec<u32>> {
    let (prompts, _) = load_prompts(None).unwrap();
    prompts
        .iter()
        .take(count)
        .map(|p| {
            let mut ids = model.codec.encode(&p.text).unwrap();
            ids.truncate(max_tokens);
            ids
        })
        .collect()
}

/// A lead of the oracle's best next token over its second that quantisation noise does not
/// overturn: the quantized model's last logits move by up to ~0.8 between two summation
/// orders of the same f32 products (measured when the CPU attention changed, and again when
/// the f32 matmul took AVX-512 kernels: a next token flipped at a margin of 0.40), so a lead
/// below that is a coin flip.
const CLEAR_MARGIN: f32 = 0.8;

#[test]
fn quantized_next_tokens_agree_with_the_dequantised_oracle() {
    let oracle = load(WeightsRequest::Dequantized);
    let quantized = load(WeightsRequest::Auto);
    assert_eq!(oracle.weights, WeightsMode::Dequantized);
    assert_eq!(quantized.weights, WeightsMode::Quantized);
    assert!(quantized.model.has_quantized_weights());
    assert!(!oracle.model.has_quantized_weights());
    let (quant_bytes, kinds) = quantized.model.weight_footprint();
    let (dense_bytes, _) = oracle.model.weight_footprint();
    assert!(
        quant_bytes * 2 < dense_bytes,
        "quantized {quant_bytes} B vs dense {dense_bytes} B ({kinds:?})"
    );

    let none = PruneSchedule::none();
    let (mut agree, mut kls, mut clear, mut clear_agree) = (0, Vec::new(), 0, 0);
    let sets = prompts(&oracle, 24, 384);
    for ids in &sets {
        let a = last_logits(&prefill(&oracle.model, ids, &none, 0).unwrap()).unwrap();
        let b = last_logits(&prefill(&quantized.model, ids, &none, 0).unwrap()).unwrap();
        let same = argmax(&a) == argmax(&b);
        agree += usize::from(same);
        kls.push(kl_divergence(&a, &b));
        let mut top = a.clone();
        top.sort_by(|x, y| y.total_cmp(x));
        if top[0] - top[1] >= CLEAR_MARGIN {
            clear += 1;
            clear_agree += usize::from(same);
        }
    }
    let mean_kl = kls.iter().sum::<f64>() / kls.len() as f64;
    eprintln!(
        "quantized vs dequantised oracle: top-1 {agree}/{} ({clear_agree}/{clear} where the \
         oracle's margin is clear), mean KL {mean_kl:.4} ({kinds:?})",
        sets.len()
    );
    // Where the oracle's best token leads by less than the quantisation noise, either side
    // may win: q8_0 activations turn a 1e-5 change anywhere upstream (a different summation
    // order in the attention) into different int8 values, which moves the last logits by up
    // to ~0.8. The 60-prompt agreement of docs/benchmarks.md measures the rate; here every
    // clear-margin prompt must agree, and 20 of 24 at least.
    assert_eq!(
        clear_agree,
        clear,
        "clear-margin top-1 agreement {clear_agree}/{clear} (all: {agree}/{})",
        sets.len()
    );
    assert!(
        clear >= 12,
        "only {clear} of 24 prompts have a clear margin"
    );
    assert!(
        agree + 4 >= sets.len(),
        "top-1 agreement {agree}/{} (mean KL {mean_kl:.4})",
        sets.len()
    );
    assert!(mean_kl < 0.05, "mean KL {mean_kl:.4}");

    // Greedy continuations of a chat-free prompt keep their first tokens.
    let ids = oracle.codec.encode("The capital of France is").unwrap();
    let greedy = |m: &LoadedModel| {
        let p = prefill(&m.model, &ids, &none, 0).unwrap();
        greedy_continuation(&m.model, &ids, p, 8, &m.eos_token_ids).unwrap()
    };
    let (a, b) = (greedy(&oracle), greedy(&quantized));
    assert_eq!(a[..4], b[..4], "{a:?} vs {b:?}");
}

#[test]
fn weights_requests_are_checked_against_the_source() {
    use sdtp::model::load::resolve_weights;
    let gguf = ModelSource::Gguf(common::real_model_path());
    let synthetic = ModelSource::Synthetic("tiny".into());
    let opts = |weights, quant: Option<&str>| LoadOptions {
        weights,
        quant: quant.map(|q| q.parse::<SyntheticQuant>().unwrap()),
        ..LoadOptions::dequantized(DType::F32, 0)
    };
    let ok = |s: &ModelSource, o: LoadOptions| resolve_weights(s, &o).unwrap();
    let err = |s: &ModelSource, o: LoadOptions| resolve_weights(s, &o).unwrap_err().to_string();
    assert_eq!(
        ok(&gguf, opts(WeightsRequest::Auto, None)),
        WeightsMode::Quantized
    );
    assert_eq!(
        ok(&gguf, opts(WeightsRequest::Dequantized, None)),
        WeightsMode::Dequantized
    );
    assert!(err(&gguf, opts(WeightsRequest::Auto, Some("q4_0"))).contains("synthetic"));
    assert_eq!(
        ok(&synthetic, opts(WeightsRequest::Auto, Some("q8_0"))),
        WeightsMode::Quantized
    );
    assert!(err(&synthetic, opts(WeightsRequest::Dequantized, Some("q8_0"))).contains("--quant"));
    assert!(err(&synthetic, opts(WeightsRequest::Quantized, None)).contains("--quant"));
    assert!("q3_z".parse::<SyntheticQuant>().is_err());
    assert!("fast".parse::<WeightsRequest>().is_err());
}

#[test]
fn synthetic_quantized_models_run_and_match_their_own_blocks() {
    // A random q8_0 model must run end to end; its matrices are blocks, not floats.
    for quant in ["q4_0", "q8_0"] {
        let options = LoadOptions {
            weights: WeightsRequest::Auto,
            quant: Some(quant.parse().unwrap()),
            ..LoadOptions::dequantized(DType::F32, 3)
        };
        let loaded = load_model_with(
            &ModelSource::Synthetic("tiny".into()),
            &Device::Cpu,
            &options,
        )
        .unwrap();
        assert!(loaded.model.has_quantized_weights());
        let (_, kinds) = loaded.model.weight_footprint();
        assert!(kinds.keys().all(|k| k == quant), "{kinds:?}");
        let ids: Vec<u32> = (0..40).map(|i| (i * 7 % 200) as u32).collect();
        let out = prefill(&loaded.model, &ids, &PruneSchedule::none(), 0).unwrap();
        let logits = last_logits(&out).unwrap();
        assert!(logits.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn an_8b_q4_0_model_runs_on_this_machine_within_its_weights_and_cache() {
    // issue 13: an 8B-shape quantized model prefills and decodes on the 24 GB CPU machine,
    // peak RSS within 1.3× its weights + KV cache. A short prompt keeps it a test (the
    // 1024-token run is in docs/benchmarks.md); the memory held is the same.
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("8b.json");
    let json_arg = json.display().to_string();
    let (code, _, stderr) = common::run_sdtp(
        &[
            "profile",
            "end2end",
            "--model",
            "synthetic:llama3-8b",
            "--quant",
            "q4_0",
            "--device",
            "cpu",
            "--length",
            "16",
            "--new-tokens",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--schedule",
            "none",
            "--no-prune-log",
            "--json",
            &json_arg,
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let model = &report["model"];
    assert_eq!(model["weights"], "quantized");
    // q, k, v, o, gate+up (stacked), down per layer; the embedding table and lm_head.
    assert_eq!(model["weight_kinds"]["q4_0"].as_u64(), Some(32 * 6 + 2));
    let weights = model["weight_bytes"].as_u64().unwrap();
    // 8.0e9 parameters at 4.5 bits.
    assert!(
        (4_000_000_000..5_000_000_000).contains(&weights),
        "{weights}"
    );
    for result in report["results"].as_array().unwrap() {
        let kv = result["kv_cache_bytes"].as_u64().unwrap();
        let peak = result["summary"]["peak_memory_bytes"]["median"]
            .as_f64()
            .unwrap();
        let bound = 1.3 * (weights + kv) as f64;
        assert!(
            peak <= bound,
            "peak RSS {peak} B > 1.3 × (weights {weights} + KV {kv})"
        );
    }
}

#[test]
fn chat_answers_end_without_the_end_of_sequence_marker() {
    // SmolLM2's chat answer to this prompt ends with <|im_end|> within 128 tokens (34 to 76
    // depending on rounding: the quantized path's near-ties); the marker ends the answer and
    // must not be printed as part of it.
    let model = common::real_model_path().display().to_string();
    let (code, stdout, stderr) = common::run_sdtp(
        &[
            "generate",
            "--model",
            &model,
            "--chat",
            "--prompt",
            "Reply with one word: hello",
            "--max-new-tokens",
            "128",
            "--no-prune-log",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("stopped at end of sequence"), "{stderr}");
    assert!(!stdout.trim().is_empty(), "empty answer");
    assert!(!stdout.contains("<|im_end|>"), "{stdout:?}");
}
