//! `sdtp saliency` and `sdtp train-predictor` end to end on the tiny synthetic model (seconds),
//! and their refusals of bad input: one line on stderr, non-zero exit, no panic.

use std::collections::HashMap;
use std::path::Path;

mod common;

use candle_core::Device;
use sdtp::model::config::ModelConfig;
use sdtp::prune::schedule::PruneSchedule;
use sdtp::prune::scorer::{build_scorer, LearnedScorer, PREDICTOR_LAYERS_KEY, PREDICTOR_MODEL_KEY};
use sdtp::train::safetensors_io::read_metadata;

fn sdtp(args: &[&str]) -> (i32, String, String) {
    common::run_sdtp(args, &[])
}

fn succeeds(args: &[&str]) -> String {
    let (code, stdout, stderr) = sdtp(args);
    assert_eq!(code, 0, "{args:?} failed: {stderr}");
    stdout
}

/// Asserts a clean failure whose single stderr line contains every one of `needles`.
fn fails_cleanly(args: &[&str], needles: &[&str]) {
    common::assert_fails_cleanly(args, &[], needles);
}

/// A JSONL corpus of `docs` documents of ~`chars` bytes each (the tiny model reads bytes).
fn write_corpus(path: &Path, docs: usize, chars: usize) {
    let words = [
        "the", "ship", "sailed", "east", "at", "dawn", "and", "Fogg", "waited",
    ];
    let mut out = String::new();
    for d in 0..docs {
        let mut text = String::new();
        let mut i = d;
        while text.len() < chars {
            text.push_str(words[i % words.len()]);
            text.push(' ');
            i = i * 7 + 3;
        }
        out.push_str(&serde_json::json!({"id": format!("doc-{d}"), "text": text}).to_string());
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Makes a tiny dataset: 6 documents, 64-token windows, every 3rd document held out.
fn tiny_dataset(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let corpus = dir.join("corpus.jsonl");
    write_corpus(&corpus, 6, 200);
    let data = dir.join("data");
    label(&corpus, &data);
    (corpus, data)
}

/// `sdtp saliency` on the tiny model: 64-token windows, every 3rd document held out, 4
/// sequences a shard. Returns its stdout.
fn label(corpus: &Path, data: &Path) -> String {
    succeeds(&[
        "saliency",
        "--model",
        "synthetic:tiny",
        "--corpus",
        s(corpus),
        "--out",
        s(data),
        "--seq-len",
        "64",
        "--heldout-every",
        "3",
        "--sequences-per-shard",
        "4",
    ])
}

#[test]
fn answered_ruler_samples_are_labelled_and_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    write_corpus(&corpus, 3, 200);
    let data = dir.path().join("data");
    let args = |out: &Path| -> Vec<String> {
        [
            "saliency",
            "--model",
            "synthetic:tiny",
            "--corpus",
            s(&corpus),
            "--out",
            s(out),
            "--seq-len",
            "64",
            "--max-sequences",
            "3",
            "--heldout-every",
            "2",
            "--ruler-tasks",
            "niah_single_1,niah_single_2",
            "--ruler-length",
            "600,700",
            "--ruler-samples",
            "2",
        ]
        .map(String::from)
        .to_vec()
    };
    let owned = args(&data);
    succeeds(&owned.iter().map(String::as_str).collect::<Vec<_>>());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("manifest.json")).unwrap())
            .unwrap();
    // 3 windows, then 2 tasks × 2 lengths × 2 samples, every 2nd of those held out.
    let windows = manifest["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 3 + 8);
    assert_eq!(windows[3]["doc"], "ruler:niah_single_1:600:0");
    assert_eq!(windows[4]["split"], "heldout");
    assert_eq!(manifest["ruler"]["lengths"], serde_json::json!([600, 700]));
    let row_len = manifest["row_len"].as_u64().unwrap();
    assert!((686..=700).contains(&row_len), "{row_len}");
    assert_eq!(manifest["tail_queries"], 32);

    let out = dir.path().join("pred").join("aware.safetensors");
    succeeds(&[
        "train-predictor",
        "--model",
        "synthetic:tiny",
        "--dataset",
        s(&data),
        "--out",
        s(&out),
        "--epochs",
        "2",
        "--pairs",
        "64",
    ]);
    let md = read_metadata(&out).unwrap();
    assert_eq!(md["sdtp.inputs"], "hidden+attention");

    // Bad RULER arguments fail before anything is written.
    let bad = dir.path().join("bad");
    for (flag, value, needles) in [
        ("--ruler-tasks", "nope", vec!["unknown RULER task", "nope"]),
        ("--ruler-length", "100", vec!["--ruler-length", "at least"]),
        ("--ruler-samples", "0", vec!["--ruler-samples 0"]),
    ] {
        let mut a = args(&bad);
        let at = a.iter().position(|x| x == flag).unwrap();
        a[at + 1] = value.to_string();
        fails_cleanly(&a.iter().map(String::as_str).collect::<Vec<_>>(), &needles);
        assert!(!bad.exists(), "{flag} {value} left {}", bad.display());
    }
}

#[test]
fn saliency_then_training_on_the_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, data) = tiny_dataset(dir.path());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("manifest.json")).unwrap())
            .unwrap();
    // keep09 mapped onto 6 layers.
    assert_eq!(manifest["layers"], serde_json::json!([1, 2, 3, 4, 5]));
    assert_eq!(
        manifest["corpus"]["heldout_documents"],
        serde_json::json!(["doc-2", "doc-5"])
    );
    let windows = manifest["windows"].as_array().unwrap().len();
    assert_eq!(windows, 24); // ~200 bytes each → windows at 0, 64, 128 and one at the tail
    assert!(data.join("shard-00004.safetensors").is_file());

    // A rerun with the same arguments resumes: nothing left to label.
    let again = label(&corpus, &data);
    assert!(again.contains("(0 newly labelled)"), "{again}");
    // An interrupted shard is relabelled, the others are kept.
    std::fs::remove_file(data.join("shard-00001.safetensors")).unwrap();
    let resumed = succeeds(&[
        "saliency",
        "--model",
        "synthetic:tiny",
        "--corpus",
        s(&corpus),
        "--out",
        s(&data),
        "--seq-len",
        "64",
        "--heldout-every",
        "3",
        "--sequences-per-shard",
        "4",
    ]);
    assert!(resumed.contains("(4 newly labelled)"), "{resumed}");

    let out = dir.path().join("pred").join("tiny.safetensors");
    let stdout = succeeds(&[
        "train-predictor",
        "--model",
        "synthetic:tiny",
        "--dataset",
        s(&data),
        "--out",
        s(&out),
        "--epochs",
        "3",
        "--pairs",
        "64",
        "--agreement",
        "3",
        "--agreement-tokens",
        "64",
    ]);
    assert!(
        stdout.contains("held-out scorers vs the abs target"),
        "{stdout}"
    );
    assert!(
        stdout.contains("agreement with the unpruned prefill"),
        "{stdout}"
    );

    // The file is what the learned scorer loads, with its provenance.
    let md = read_metadata(&out).unwrap();
    let cfg = ModelConfig::synthetic("tiny").unwrap();
    assert_eq!(
        md[PREDICTOR_MODEL_KEY],
        sdtp::prune::scorer::model_fingerprint(&cfg)
    );
    assert_eq!(md[PREDICTOR_LAYERS_KEY], "1,2,3,4,5");
    for key in ["sdtp.schedule", "sdtp.corpus", "sdtp.date"] {
        assert!(md.contains_key(key), "{key} missing from {md:?}");
    }
    assert!(md["sdtp.corpus"].contains("corpus.jsonl"), "{md:?}");
    let schedule = PruneSchedule::resolve(s(&out.with_extension("toml")), 6)
        .unwrap()
        .schedule;
    assert_eq!(schedule.predictor.as_deref(), Some(out.as_path()));
    LearnedScorer::check_file(&out, &cfg, &schedule).unwrap();
    build_scorer(&schedule, &cfg, &Device::Cpu, 0).unwrap();

    // The report has the per-epoch log and the four scorers at every stage.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    let history = report["history"].as_array().unwrap();
    assert!(!history.is_empty() && history.len() <= 3);
    assert_eq!(report["comparison"].as_array().unwrap().len(), 4 * 5);
    assert_eq!(report["agreement"]["prompts"], 3);
    let mut scorers: HashMap<String, usize> = HashMap::new();
    for row in report["comparison"].as_array().unwrap() {
        *scorers
            .entry(row["scorer"].as_str().unwrap().into())
            .or_default() += 1;
        let rho = row["spearman_mean"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&rho), "{row}");
    }
    assert_eq!(scorers.len(), 4);

    // The schedule file drives generation with the learned scorer.
    succeeds(&[
        "generate",
        "--model",
        "synthetic:tiny",
        "--schedule",
        s(&out.with_extension("toml")),
        "--prompt",
        &"x".repeat(80),
        "--max-new-tokens",
        "2",
        "--no-prune-log",
    ]);
    // And the predictor can be evaluated again without training.
    let eval = succeeds(&[
        "train-predictor",
        "--model",
        "synthetic:tiny",
        "--dataset",
        s(&data),
        "--out",
        s(&out),
        "--evaluate-only",
    ]);
    assert!(
        eval.contains("held-out scorers vs the abs target"),
        "{eval}"
    );
    // ... into its own report, leaving the training report alone.
    assert!(out.with_extension("eval.json").is_file());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert!(!report["history"].as_array().unwrap().is_empty());
    // Evaluating against another target than the one trained on is refused.
    fails_cleanly(
        &[
            "train-predictor",
            "--model",
            "synthetic:tiny",
            "--dataset",
            s(&data),
            "--out",
            s(&out),
            "--evaluate-only",
            "--target",
            "signed",
        ],
        &["was trained on the abs target", "--target abs"],
    );
}

#[test]
fn saliency_refuses_bad_corpora_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    let base = |corpus: &Path| -> Vec<String> {
        [
            "saliency",
            "--model",
            "synthetic:tiny",
            "--seq-len",
            "64",
            "--corpus",
            s(corpus),
            "--out",
            s(&out),
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let run = |args: Vec<String>, needles: &[&str]| {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        fails_cleanly(&refs, needles);
    };
    run(
        base(&d.join("nope.jsonl")),
        &["corpus", "nope.jsonl", "does not exist"],
    );
    let empty = d.join("empty.jsonl");
    std::fs::write(&empty, "\n\n").unwrap();
    run(base(&empty), &["corpus", "empty.jsonl", "is empty"]);
    let blank = d.join("blank.jsonl");
    std::fs::write(&blank, "{\"id\": \"a\", \"text\": \"  \"}\n").unwrap();
    run(base(&blank), &["is empty"]);
    let bad = d.join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": \"a\", \"text\": \"fine\"}\nnot json\n").unwrap();
    run(base(&bad), &["bad.jsonl line 2"]);
    let short = d.join("short.jsonl");
    write_corpus(&short, 2, 20);
    run(base(&short), &["no document of 64 tokens"]);
    assert!(!out.exists(), "a refused run created {}", out.display());

    let mut no_stages = base(&short);
    no_stages.extend(["--schedule".to_string(), "none".to_string()]);
    run(no_stages, &["schedule none has no pruning stage"]);

    // A folder made with other settings is not resumed.
    let corpus = d.join("corpus.jsonl");
    write_corpus(&corpus, 3, 100);
    succeeds(&base(&corpus).iter().map(String::as_str).collect::<Vec<_>>());
    let mut other = base(&corpus);
    other[4] = "32".to_string(); // --seq-len
    run(other, &["was made with a different seq_len"]);
}

#[test]
fn train_predictor_refuses_bad_datasets_and_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, data) = tiny_dataset(d);
    let out = d.join("p.safetensors");
    fails_cleanly(
        &[
            "train-predictor",
            "--model",
            "synthetic:tiny",
            "--dataset",
            s(&d.join("none")),
            "--out",
            s(&out),
        ],
        &["dataset", "does not exist", "sdtp saliency"],
    );
    std::fs::create_dir_all(d.join("emptydir")).unwrap();
    fails_cleanly(
        &[
            "train-predictor",
            "--model",
            "synthetic:tiny",
            "--dataset",
            s(&d.join("emptydir")),
            "--out",
            s(&out),
        ],
        &["is not a saliency dataset"],
    );
    // A dataset of another model: only the config is read, no weights load.
    fails_cleanly(
        &[
            "train-predictor",
            "--model",
            "synthetic:smollm2-135m",
            "--dataset",
            s(&data),
            "--out",
            s(&out),
        ],
        &["was made for model", "l6-h64", "not llama-l30-h576"],
    );
    // Schedule layers the dataset lacks.
    let schedule = d.join("layer0.toml");
    std::fs::write(
        &schedule,
        "stages = [ { layer = 0, keep_ratio = 0.5 }, { layer = 2, keep_ratio = 0.5 } ]",
    )
    .unwrap();
    fails_cleanly(
        &[
            "train-predictor",
            "--model",
            "synthetic:tiny",
            "--dataset",
            s(&data),
            "--out",
            s(&out),
            "--schedule",
            s(&schedule),
        ],
        &["prunes after layer 0", "[1, 2, 3, 4, 5]"],
    );
    fails_cleanly(
        &[
            "train-predictor",
            "--model",
            "synthetic:tiny",
            "--dataset",
            s(&data),
            "--out",
            s(&out),
            "--evaluate-only",
        ],
        &["no predictor at"],
    );
    fails_cleanly(
        &[
            "train-predictor",
            "--model",
            "synthetic:tiny",
            "--dataset",
            s(&data),
            "--out",
            s(&out),
            "--agreement-scorers",
            "learned,bogus",
        ],
        &["unknown scorer \"bogus\""],
    );
    assert!(!out.exists());
}
