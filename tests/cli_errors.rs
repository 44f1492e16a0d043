//! Bad input gets one clear line on stderr, a non-zero exit, no panic and no output file.

mod common;

use std::path::Path;

use candle_core::quantized::gguf_file;

/// Asserts a clean failure whose single stderr line contains every one of `needles`.
fn fails_cleanly(args: &[&str], needles: &[&str]) {
    fails_cleanly_with_env(args, &[], needles)
}

fn fails_cleanly_with_env(args: &[&str], envs: &[(&str, &Path)], needles: &[&str]) {
    let stdout = common::assert_fails_cleanly(args, envs, needles);
    assert!(stdout.is_empty(), "{args:?} printed {stdout:?}");
}

fn model_arg() -> String {
    common::real_model_path().display().to_string()
}

#[test]
fn missing_or_wrong_model_paths() {
    fails_cleanly(
        &[
            "generate",
            "--model",
            "/no/such/model.gguf",
            "--prompt",
            "hi",
        ],
        &["does not exist"],
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    fails_cleanly(
        &["generate", "--model", d, "--prompt", "hi"],
        &["no config.json"],
    );
    let txt = dir.path().join("weights.bin");
    std::fs::write(&txt, b"hello").unwrap();
    fails_cleanly(
        &[
            "generate",
            "--model",
            txt.to_str().unwrap(),
            "--prompt",
            "hi",
        ],
        &["not a .gguf file"],
    );
    let empty_cache = tempfile::tempdir().unwrap();
    fails_cleanly_with_env(
        &["generate", "--model", "nobody/nothing", "--prompt", "hi"],
        &[("HF_HUB_CACHE", empty_cache.path())],
        &[
            "nobody/nothing",
            "not in the hf-hub cache",
            "models--nobody--nothing",
        ],
    );
}

#[test]
fn default_model_missing_names_the_fetch_command() {
    let empty = tempfile::tempdir().unwrap();
    fails_cleanly_with_env(
        &["generate", "--prompt", "hi"],
        &[("SDTP_CACHE", empty.path())],
        &["scripts/fetch_model.sh"],
    );
}

#[test]
fn corrupt_and_truncated_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, vec![7u8; 4096]).unwrap();
    fails_cleanly(
        &[
            "generate",
            "--model",
            garbage.to_str().unwrap(),
            "--prompt",
            "hi",
        ],
        &["not a readable GGUF file"],
    );

    let real = std::fs::read(common::real_model_path()).unwrap();
    let head = dir.path().join("head.gguf");
    std::fs::write(&head, &real[..1 << 20]).unwrap();
    fails_cleanly(
        &[
            "generate",
            "--model",
            head.to_str().unwrap(),
            "--prompt",
            "hi",
        ],
        &["head.gguf"],
    );

    let truncated = truncated_after_header(dir.path());
    fails_cleanly(
        &[
            "generate",
            "--model",
            truncated.to_str().unwrap(),
            "--prompt",
            "hi",
        ],
        &["cannot load weights", "only"],
    );
}

/// The real GGUF cut just after its header: config and tokenizer read, weights do not.
fn truncated_after_header(dir: &Path) -> std::path::PathBuf {
    let real_path = common::real_model_path();
    let mut file = std::fs::File::open(&real_path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    let bytes = std::fs::read(&real_path).unwrap();
    let path = dir.join("truncated.gguf");
    std::fs::write(&path, &bytes[..content.tensor_data_offset as usize + 64]).unwrap();
    path
}

#[test]
fn unsupported_gguf_architecture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gpt2.gguf");
    let mut file = std::fs::File::create(&path).unwrap();
    let arch = gguf_file::Value::String("gpt2".into());
    let embd = candle_core::quantized::QTensor::quantize(
        &candle_core::Tensor::zeros((8, 4), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap(),
        candle_core::quantized::GgmlDType::F32,
    )
    .unwrap();
    gguf_file::write(
        &mut file,
        &[("general.architecture", &arch)],
        &[("token_embd.weight", &embd)],
    )
    .unwrap();
    drop(file);
    fails_cleanly(
        &[
            "generate",
            "--model",
            path.to_str().unwrap(),
            "--prompt",
            "hi",
        ],
        &["unsupported GGUF architecture \"gpt2\""],
    );
}

#[test]
fn bad_prompts() {
    let m = model_arg();
    fails_cleanly(
        &["generate", "--model", &m, "--prompt", "   "],
        &["empty prompt"],
    );
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.txt");
    std::fs::write(&long, "word ".repeat(9000)).unwrap();
    fails_cleanly(
        &[
            "generate",
            "--model",
            &m,
            "--prompt-file",
            long.to_str().unwrap(),
        ],
        &["longer than the model's context of 8192"],
    );
    fails_cleanly(
        &[
            "generate",
            "--model",
            &m,
            "--prompt-file",
            "/no/such/prompt.txt",
        ],
        &["cannot read prompt file"],
    );
}

#[test]
fn bad_devices_and_dtypes() {
    let m = model_arg();
    fails_cleanly(
        &[
            "generate", "--model", &m, "--prompt", "hi", "--device", "tpu",
        ],
        &["unknown device \"tpu\""],
    );
    fails_cleanly(
        &["generate", "--model", &m, "--prompt", "hi", "--dtype", "f8"],
        &["unknown dtype \"f8\""],
    );
    #[cfg(not(feature = "cuda"))]
    fails_cleanly(
        &[
            "generate", "--model", &m, "--prompt", "hi", "--device", "cuda",
        ],
        &["built without CUDA"],
    );
}

/// Schedule errors come before the weights load: the model here has a readable header but
/// no weights, so a load attempt would report the truncation instead.
#[test]
fn bad_schedules_fail_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let model = truncated_after_header(dir.path());
    let model = model.to_str().unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "stages = [{ layer = 30, keep_ratio = 0.9 }]",
            "outside the model",
        ),
        (
            "stages = [{ layer = 5, keep_ratio = 0.9 }, { layer = 5, keep_ratio = 0.9 }]",
            "increasing",
        ),
        ("stages = [{ layer = 5, keep_ratio = 0.0 }]", "keep_ratio"),
        ("stages = [{ layer = 5, keep_ratio = 1.5 }]", "keep_ratio"),
        ("stages = [{ layer = 5, keep_ratio = nan }]", "keep_ratio"),
        (
            "scorer = \"magic\"\nstages = [{ layer = 5, keep_ratio = 0.9 }]",
            "magic",
        ),
        (
            "stages = [{ layer = 5, keep_ratio = 0.9 }]\nmin_tail_ratio = 2.0",
            "min_tail_ratio",
        ),
    ];
    for (i, (toml, needle)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        fails_cleanly(
            &[
                "generate",
                "--model",
                model,
                "--prompt",
                "hi",
                "--schedule",
                path.to_str().unwrap(),
            ],
            &[needle],
        );
    }
    fails_cleanly(
        &[
            "generate",
            "--model",
            model,
            "--prompt",
            "hi",
            "--schedule",
            "keep99",
        ],
        &["keep99"],
    );
    fails_cleanly(
        &[
            "generate",
            "--model",
            model,
            "--prompt",
            "hi",
            "--schedule",
            "keep09",
            "--scorer",
            "oracle",
        ],
        &["oracle"],
    );
}

#[test]
fn predictor_for_another_model_is_refused_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let model = truncated_after_header(dir.path());
    let predictor = dir.path().join("other.safetensors");
    let weight =
        candle_core::Tensor::zeros((1, 4), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
    let metadata = std::collections::HashMap::from([
        (
            "sdtp.model".to_string(),
            "llama-l32-h4096-i11008-a32-kv32-v32000".to_string(),
        ),
        ("sdtp.layers".to_string(), "4".to_string()),
    ]);
    let data = safetensors::serialize(
        [("layers.4.fc2.weight", safetensors_view(&weight))],
        Some(metadata),
    )
    .unwrap();
    std::fs::write(&predictor, data).unwrap();
    let schedule = dir.path().join("learned.toml");
    std::fs::write(
        &schedule,
        format!("scorer = \"learned\"\npredictor = \"{}\"\nstages = [{{ layer = 4, keep_ratio = 0.9 }}]", predictor.display()),
    )
    .unwrap();
    fails_cleanly(
        &[
            "generate",
            "--model",
            model.to_str().unwrap(),
            "--prompt",
            "hi",
            "--schedule",
            schedule.to_str().unwrap(),
        ],
        &["was trained for model llama-l32"],
    );
}

struct F32View(Vec<u8>, Vec<usize>);

impl safetensors::View for F32View {
    fn dtype(&self) -> safetensors::Dtype {
        safetensors::Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.1
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.0)
    }
    fn data_len(&self) -> usize {
        self.0.len()
    }
}

fn safetensors_view(t: &candle_core::Tensor) -> F32View {
    let values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    F32View(
        values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        t.dims().to_vec(),
    )
}

#[test]
fn chat_without_a_template_is_an_error() {
    fails_cleanly(
        &[
            "generate",
            "--model",
            "synthetic:tiny",
            "--prompt",
            "hi",
            "--chat",
        ],
        &["no chat template"],
    );
}

#[test]
fn bad_sampling_and_weights_settings() {
    let m = model_arg();
    let generate = |extra: &[&str]| {
        let mut args = vec!["generate", "--model", &m, "--prompt", "hi"];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |extra: &[&str], needles: &[&str]| {
        let args = generate(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_cleanly(&refs, needles);
    };
    run(&["--top-p", "2"], &["--top-p 2", "(0, 1]"]);
    run(&["--top-p", "0"], &["--top-p 0"]);
    run(&["--top-k", "0"], &["--top-k 0"]);
    run(&["--temperature=-1"], &["--temperature -1"]);
    run(&["--weights", "fast"], &["unknown --weights \"fast\""]);
    run(&["--quant", "q4_0"], &["--quant q4_0", "synthetic"]);
    fails_cleanly(
        &[
            "generate",
            "--model",
            "synthetic:smollm2-135m",
            "--quant",
            "q4_k",
            "--prompt",
            "hi",
        ],
        &["--quant q4_k", "multiple of 256"],
    );
}
