//! `sdtp profile synthetic-gguf`: a synthetic model written as a GGUF file loads back as the
//! very model `synthetic:<preset> --quant <type>` builds in memory (same blocks, llama.cpp's
//! Q/K row order undone by the loader), with a tokenizer that reads text; bad requests fail
//! before any weight is made and leave no file.

mod common;

use candle_core::{DType, Device};
use sdtp::eval::forward::{last_logits, prefill};
use sdtp::model::load::{load_model_with, LoadOptions, LoadedModel, ModelSource};
use sdtp::model::quant::{WeightsMode, WeightsRequest};
use sdtp::prune::schedule::PruneSchedule;

fn load(source: ModelSource, quant: Option<&str>, seed: u64) -> LoadedModel {
    let options = LoadOptions {
        weights: WeightsRequest::Auto,
        quant: quant.map(|q| q.parse().unwrap()),
        ..LoadOptions::dequantized(DType::F32, seed)
    };
    load_model_with(&source, &Device::Cpu, &options).expect("model loads")
}

fn export(dir: &std::path::Path, preset: &str, quant: &str, seed: u64) -> std::path::PathBuf {
    let out = dir.join(format!("{preset}.{quant}.gguf"));
    let out_arg = out.display().to_string();
    let seed_arg = seed.to_string();
    let model_arg = format!("synthetic:{preset}");
    let (code, _, stderr) = common::run_sdtp(
        &[
            "profile",
            "synthetic-gguf",
            "--model",
            &model_arg,
            "--quant",
            quant,
            "--seed",
            &seed_arg,
            "--out",
            &out_arg,
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("wrote"), "{stderr}");
    out
}

#[test]
fn the_written_file_is_the_in_memory_synthetic_model() {
    let dir = tempfile::tempdir().unwrap();
    for quant in ["q4_0", "q8_0"] {
        let path = export(dir.path(), "tiny", quant, 11);
        let from_file = load(ModelSource::Gguf(path.clone()), None, 0);
        let in_memory = load(ModelSource::Synthetic("tiny".into()), Some(quant), 11);
        assert_eq!(from_file.weights, WeightsMode::Quantized);
        assert_eq!(from_file.model.config().vocab_size, 512);
        assert_eq!(
            from_file.model.weight_footprint(),
            in_memory.model.weight_footprint()
        );
        // Ids from the file's tokenizer: one per byte of plain ASCII text.
        let ids = from_file
            .codec
            .encode("The pass key is 71578.\nRemember it.")
            .unwrap();
        assert_eq!(ids.len(), "The pass key is 71578.\nRemember it.".len());
        let a = last_logits(&prefill(&from_file.model, &ids, &PruneSchedule::none(), 0).unwrap())
            .unwrap();
        let b = last_logits(&prefill(&in_memory.model, &ids, &PruneSchedule::none(), 0).unwrap())
            .unwrap();
        // GGUF holds the norm epsilon as f32 (1e-5 becomes 1e-5 − 2.5e-13): a last-bit
        // difference at most.
        let diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            diff <= 1e-5,
            "{quant}: logits of the file differ from the in-memory model by {diff}"
        );
        // Another seed is another model.
        let other = load(ModelSource::Synthetic("tiny".into()), Some(quant), 12);
        let c =
            last_logits(&prefill(&other.model, &ids, &PruneSchedule::none(), 0).unwrap()).unwrap();
        assert_ne!(a, c);
    }
}

#[test]
fn bad_requests_fail_with_one_line_and_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let out_arg = out.display().to_string();
    let dir_arg = dir.path().display().to_string();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--model", "synthetic:qwen2-7b", "--quant", "q4_0"],
            "biases",
        ),
        (
            &["--model", "synthetic:smollm2-135m", "--quant", "q4_k"],
            "multiple of 256",
        ),
        (&["--model", "synthetic:tiny", "--quant", "q5_9"], "--quant"),
        (&["--model", "model.gguf", "--quant", "q4_0"], "synthetic"),
        (
            &["--model", "synthetic:nope", "--quant", "q4_0"],
            "unknown synthetic preset",
        ),
    ];
    for (args, expect) in cases {
        let mut full = vec!["profile", "synthetic-gguf", "--out", &out_arg];
        full.extend_from_slice(args);
        let (code, stdout, stderr) = common::run_sdtp(&full, &[]);
        assert_ne!(code, 0, "{args:?}");
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stdout.is_empty());
        assert!(!out.exists());
    }
    let (code, _, stderr) = common::run_sdtp(
        &[
            "profile",
            "synthetic-gguf",
            "--model",
            "synthetic:tiny",
            "--quant",
            "q8_0",
            "--out",
            &dir_arg,
        ],
        &[],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("is a folder"), "{stderr}");
}
