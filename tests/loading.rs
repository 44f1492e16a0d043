//! Every way `--model` can load: HF folders (single and sharded safetensors), the hf-hub
//! cache, GGUF, and their agreement on the real weights; and the folder path's bad inputs.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use sdtp::model::load::{load_model, read_gguf_content, LoadedModel, ModelSource};
use sdtp::model::tokenizer::tokenizer_from_gguf;
use sdtp::model::weights::GgufWeights;
use sdtp::prefill::{prefill_with_pruning, PrefillOptions};
use sdtp::prune::schedule::PruneSchedule;
use sdtp::prune::scorer::NormScorer;

fn last_logits(loaded: &LoadedModel, ids: &[u32]) -> Tensor {
    prefill_with_pruning(
        &loaded.model,
        ids,
        &PruneSchedule::none(),
        &mut NormScorer,
        &PrefillOptions::default(),
    )
    .unwrap()
    .last_logits
}

fn write_safetensors(path: &Path, tensors: &HashMap<String, Tensor>) {
    candle_core::safetensors::save(tensors, path).unwrap();
}

/// The SmolLM2 tokenizer as a tokenizer.json, so test folders have a real one.
fn write_tokenizer(dir: &Path) {
    let content = read_gguf_content(&common::real_model_path()).unwrap();
    let tokenizer = tokenizer_from_gguf(&content).unwrap().tokenizer;
    tokenizer.save(dir.join("tokenizer.json"), false).unwrap();
}

const TINY_CONFIG: &str = r#"{"model_type":"llama","vocab_size":49152,"hidden_size":32,
  "intermediate_size":64,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
  "rms_norm_eps":1e-5,"rope_theta":10000.0,"max_position_embeddings":256,
  "tie_word_embeddings":false,"eos_token_id":2}"#;

/// Deterministic random weights of the tiny HF shape above.
fn tiny_weights() -> HashMap<String, Tensor> {
    let dev = Device::Cpu;
    let mut seed = 0u64;
    let mut rnd = |shape: &[usize]| {
        seed += 1;
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|i| (((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 1000.0 - 0.5) * 0.2)
            .collect();
        Tensor::from_vec(values, shape, &dev).unwrap()
    };
    let mut w = HashMap::new();
    w.insert("model.embed_tokens.weight".to_string(), rnd(&[49152, 32]));
    w.insert("lm_head.weight".to_string(), rnd(&[49152, 32]));
    w.insert(
        "model.norm.weight".to_string(),
        Tensor::ones(32, DType::F32, &dev).unwrap(),
    );
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        for (name, shape) in [
            ("self_attn.q_proj.weight", [32, 32]),
            ("self_attn.k_proj.weight", [16, 32]),
            ("self_attn.v_proj.weight", [16, 32]),
            ("self_attn.o_proj.weight", [32, 32]),
            ("mlp.gate_proj.weight", [64, 32]),
            ("mlp.up_proj.weight", [64, 32]),
            ("mlp.down_proj.weight", [32, 64]),
        ] {
            w.insert(format!("{p}.{name}"), rnd(&shape));
        }
        for norm in ["input_layernorm.weight", "post_attention_layernorm.weight"] {
            w.insert(
                format!("{p}.{norm}"),
                Tensor::ones(32, DType::F32, &dev).unwrap(),
            );
        }
    }
    w
}

fn tiny_folder(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("config.json"), TINY_CONFIG).unwrap();
    write_tokenizer(dir);
    write_safetensors(&dir.join("model.safetensors"), &tiny_weights());
    dir.to_path_buf()
}

fn load(source: ModelSource) -> anyhow::Result<LoadedModel> {
    load_model(&source, &Device::Cpu, DType::F32, 0)
}

#[test]
fn sharded_safetensors_equal_the_single_file() {
    let single = tempfile::tempdir().unwrap();
    let a = load(ModelSource::Folder(tiny_folder(single.path()))).unwrap();

    let sharded = tempfile::tempdir().unwrap();
    let dir = sharded.path();
    std::fs::write(dir.join("config.json"), TINY_CONFIG).unwrap();
    write_tokenizer(dir);
    let weights = tiny_weights();
    let (mut first, mut second) = (HashMap::new(), HashMap::new());
    let mut map = serde_json::Map::new();
    for (name, t) in weights {
        let file = if name.contains("layers.1") {
            "model-00002-of-00002.safetensors"
        } else {
            "model-00001-of-00002.safetensors"
        };
        map.insert(name.clone(), serde_json::Value::String(file.into()));
        if name.contains("layers.1") {
            second.insert(name, t);
        } else {
            first.insert(name, t);
        }
    }
    write_safetensors(&dir.join("model-00001-of-00002.safetensors"), &first);
    write_safetensors(&dir.join("model-00002-of-00002.safetensors"), &second);
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let b = load(ModelSource::Folder(dir.to_path_buf())).unwrap();

    let ids = a.codec.encode("Sharding must not change a thing.").unwrap();
    let (la, lb) = (last_logits(&a, &ids), last_logits(&b, &ids));
    assert_eq!(la.to_vec1::<f32>().unwrap(), lb.to_vec1::<f32>().unwrap());
    assert_eq!(a.eos_token_ids, vec![2]);
}

/// Lays out `models--org--name/{refs/main,snapshots/<rev>/…}` as huggingface_hub does.
#[test]
fn hub_ids_resolve_from_a_laid_out_cache() {
    let cache = tempfile::tempdir().unwrap();
    let repo = cache.path().join("models--acme--tiny-llama");
    let snapshot = repo.join("snapshots").join("0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
    tiny_folder(&snapshot);

    let source = ModelSource::from_hub_cache("acme/tiny-llama", cache.path()).unwrap();
    assert_eq!(
        source,
        ModelSource::Hub {
            id: "acme/tiny-llama".into(),
            snapshot: snapshot.clone()
        }
    );
    assert_eq!(source.display_name(), "acme/tiny-llama");
    let loaded = load(source).unwrap();
    assert_eq!(loaded.model.config().num_hidden_layers, 2);

    // The binary honours HF_HUB_CACHE (and HF_HOME/hub) when given the id.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sdtp"))
        .args([
            "generate",
            "--model",
            "acme/tiny-llama",
            "--prompt",
            "Hello",
            "--max-new-tokens",
            "3",
            "--no-prune-log",
        ])
        .env("HF_HUB_CACHE", cache.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let err = ModelSource::from_hub_cache("acme/other", cache.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("models--acme--other") && err.contains(&cache.path().display().to_string()),
        "{err}"
    );
}

/// The GGUF's weights written as an HF folder (Q/K rows in HF order) load through the
/// safetensors path and give the same logits as the GGUF path.
#[test]
fn real_weights_through_safetensors_match_the_gguf_path() {
    let gguf = common::load_real_model();
    let path = common::real_model_path();
    let content = read_gguf_content(&path).unwrap();
    let cfg = gguf.model.config().clone();
    let weights = GgufWeights::new(&path, content, &cfg).unwrap();
    let tensors: HashMap<String, Tensor> = weights
        .hf_names()
        .into_iter()
        .map(|name| {
            let t = weights.tensor(&name, &Device::Cpu).unwrap();
            (name, t)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    write_safetensors(&dir.path().join("model.safetensors"), &tensors);
    drop(tensors);
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads, "num_key_value_heads": cfg.num_key_value_heads,
        "rms_norm_eps": cfg.rms_norm_eps, "rope_theta": cfg.rope_theta,
        "max_position_embeddings": cfg.max_position_embeddings, "tie_word_embeddings": true,
        "eos_token_id": 2
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    write_tokenizer(dir.path());
    let folder = load(ModelSource::Folder(dir.path().to_path_buf())).unwrap();

    let ids = gguf.codec.encode("The capital of France is").unwrap();
    assert_eq!(
        folder.codec.encode("The capital of France is").unwrap(),
        ids
    );
    let diff = common::max_abs_diff(&last_logits(&gguf, &ids), &last_logits(&folder, &ids));
    assert!(diff <= 1e-5, "{diff}");
}

#[test]
fn folder_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    tiny_folder(dir.path());
    let check = |needle: &str| {
        let err = format!(
            "{:#}",
            load(ModelSource::Folder(dir.path().to_path_buf()))
                .err()
                .expect("load fails")
        );
        assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        assert!(!err.trim().contains('\n') || err.lines().next().unwrap().contains(needle));
    };
    // Weights that disagree with the config.
    std::fs::write(
        dir.path().join("config.json"),
        TINY_CONFIG.replace("\"intermediate_size\":64", "\"intermediate_size\":48"),
    )
    .unwrap();
    check("shape mismatch");
    // Unsupported architecture.
    std::fs::write(
        dir.path().join("config.json"),
        TINY_CONFIG.replace("\"llama\"", "\"gpt2\""),
    )
    .unwrap();
    check("unsupported architecture model_type \"gpt2\"");
    // Corrupt safetensors.
    std::fs::write(dir.path().join("config.json"), TINY_CONFIG).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}",
    )
    .unwrap();
    check("cannot read safetensors");
    // Truncated safetensors.
    let full = tempfile::tempdir().unwrap();
    tiny_folder(full.path());
    let bytes = std::fs::read(full.path().join("model.safetensors")).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    check("cannot read safetensors");
    // No weights at all.
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    check("neither model.safetensors nor model.safetensors.index.json");
}
