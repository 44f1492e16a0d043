//! `sdtp eval agreement --reference-weights` through the built binary: the quantized GGUF
//! path against its dequantised f32 reference on the real SmolLM2 (the `none` contender is
//! the quantisation error alone), the flag checked before any weights load, and reports
//! without it unchanged.

mod common;

use std::path::Path;

use serde_json::Value;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JSON report at {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the report is valid JSON")
}

/// Runs `sdtp eval agreement` with `args` and `--json` into `dir`; (stdout, report).
fn agreement(dir: &Path, name: &str, args: &[&str]) -> (String, Value) {
    let json = dir.join(name);
    let mut all = vec![
        "eval",
        "agreement",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = common::run_sdtp(&all, &[]);
    assert_eq!(code, 0, "{all:?} failed: {stderr}");
    (stdout, read_json(&json))
}

fn modes(report: &Value, key: &str) -> Vec<String> {
    report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["mode"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn quantized_contenders_against_the_dequantised_reference_on_the_real_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::real_model_path();
    let (stdout, r) = agreement(
        dir.path(),
        "q.json",
        &[
            "--model",
            model.to_str().unwrap(),
            "--device",
            "cpu",
            "--weights",
            "quantized",
            "--reference-weights",
            "dequantized",
            "--schedule",
            "keep09",
            "--max-tokens",
            "600",
            "--limit",
            "4",
            "--continuation-tokens",
            "4",
        ],
    );
    assert_eq!(r["model"]["weights"], "quantized");
    assert_eq!(r["reference_weights"], "dequantized");
    assert!(
        stdout.contains("· reference: dequantized weights"),
        "{stdout}"
    );
    // The unpruned contender is added, first: against another model it is a measurement.
    assert_eq!(modes(&r, "schedules"), ["none", "keep09/attention"]);
    assert_eq!(modes(&r, "summary"), ["none", "keep09/attention"]);
    assert_eq!(r["baseline"].as_array().unwrap().len(), 4);
    assert_eq!(r["rows"].as_array().unwrap().len(), 8);
    let none = &r["summary"][0];
    let (top1, kl) = (
        none["first_token_agreement"].as_f64().unwrap(),
        none["kl_mean"].as_f64().unwrap(),
    );
    eprintln!("quantized vs dequantised reference, 4 prompts: top-1 {top1}, mean KL {kl:.5}");
    assert_eq!(none["prompts"], 4);
    assert!(top1 >= 0.75, "top-1 agreement {top1}");
    // Not 0: the reference really is the other load (the same model gives exactly 0).
    assert!(kl > 0.0 && kl < 0.1, "mean KL {kl}");
    assert_eq!(none["flop_reduction"], 0.0);
    let keep = &r["summary"][1];
    assert!(keep["flop_reduction"].as_f64().unwrap() > 0.0);
    assert!(keep["kl_mean"].as_f64().unwrap().is_finite());
}

#[test]
fn without_the_flag_or_with_the_runs_own_weights_the_report_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        [
            r#"{"id":"a","text":"Mr. Phileas Fogg lived, in 1872, at No. 7, Saville Row. Who lived there?"}"#,
            r#"{"id":"b","text":"Passepartout had tried many trades in London. What trades?"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let base = [
        "--model",
        "synthetic:tiny",
        "--prompts",
        prompts.to_str().unwrap(),
        "--continuation-tokens",
        "3",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let run = |name: &str, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        agreement(dir.path(), name, &args)
    };
    let (plain_out, plain) = run("plain.json", with(&[]));
    let mut keys: Vec<&str> = plain
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    // The layout of every agreement report before the flag existed.
    assert_eq!(
        keys,
        [
            "baseline",
            "command",
            "cpu_threads",
            "date",
            "device",
            "dtype",
            "git_commit",
            "model",
            "prompts",
            "rows",
            "schedules",
            "schema_version",
            "sdtp_version",
            "seed",
            "settings",
            "summary",
        ]
    );
    assert!(plain.get("reference_weights").is_none());
    assert!(!plain_out.contains("reference:"), "{plain_out}");
    // No unpruned contender is added: against itself it would agree trivially.
    assert_eq!(modes(&plain, "schedules"), ["keep09/attention"]);
    // A synthetic model without --quant is dense whatever auto resolves to: the same run.
    for (name, weights) in [("auto.json", "auto"), ("dense.json", "dequantized")] {
        let (out, r) = run(name, with(&["--reference-weights", weights]));
        let drop_date = |v: &Value| {
            let mut v = v.clone();
            v.as_object_mut().unwrap().remove("date");
            v
        };
        assert_eq!(
            drop_date(&r),
            drop_date(&plain),
            "--reference-weights {weights}"
        );
        assert_eq!(out, plain_out, "--reference-weights {weights}");
    }
}

#[test]
fn reference_weights_are_checked_before_the_weights_load() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("never.json");
    let j = json.to_str().unwrap();
    let agreement = |extra: &[&str]| -> Vec<String> {
        ["eval", "agreement", "--json", j]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let cases: [(Vec<String>, &[&str]); 3] = [
        (
            agreement(&["--model", "synthetic:tiny", "--reference-weights", "fp8"]),
            &["unknown --reference-weights \"fp8\"", "dequantized"],
        ),
        // As `--weights quantized` fails on a float model.
        (
            agreement(&[
                "--model",
                "synthetic:tiny",
                "--reference-weights",
                "quantized",
            ]),
            &["--reference-weights quantized", "float weights"],
        ),
        (
            agreement(&[
                "--model",
                "synthetic:tiny",
                "--quant",
                "q8_0",
                "--reference-weights",
                "dequantized",
            ]),
            &["--reference-weights dequantized", "--quant"],
        ),
    ];
    for (args, needles) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::assert_fails_cleanly(&args, &[], needles);
        assert!(!json.exists(), "{args:?} left a report");
    }
}
