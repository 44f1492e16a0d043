//! `sdtp eval ruler` through the built binary: a small run on the default model (the JSON
//! report's schema, scores in range, the SVG), a deterministic run on the tiny synthetic model
//! where an empty schedule agrees with the baseline everywhere, and bad input that fails with
//! one line before anything is written.

mod common;

use std::path::Path;

use serde_json::Value;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JSON report at {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the report is valid JSON")
}

fn ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = common::run_sdtp(args, &[]);
    assert_eq!(code, 0, "{args:?} failed: {stderr}");
    stdout
}

fn in_range(v: &Value, lo: f64, hi: f64) -> bool {
    v.as_f64().is_some_and(|x| (lo..=hi).contains(&x))
}

#[test]
fn small_run_on_the_default_model() {
    let model = common::real_model_path();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("ruler.json");
    let stdout = ok(&[
        "eval",
        "ruler",
        "--model",
        model.to_str().unwrap(),
        "--tasks",
        "niah_single_1,vt",
        "--length",
        "256",
        "--samples",
        "2",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(stdout.contains("| niah_single_1 | 256 |"), "{stdout}");
    assert!(stdout.contains("| **average** | 256 |"), "{stdout}");
    assert!(stdout.contains("| kept |"), "{stdout}");
    let r = read_json(&json);
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["command"], "ruler");
    assert_eq!(
        r["model"]["name"],
        model.file_name().unwrap().to_str().unwrap()
    );
    assert_eq!(r["seed"], 299_792_458u64);
    let s = &r["settings"];
    assert_eq!(s["tasks"], serde_json::json!(["niah_single_1", "vt"]));
    assert_eq!(s["lengths"], serde_json::json!([256]));
    assert_eq!(s["samples"], 2);
    assert_eq!(s["new_tokens"], Value::Null);
    assert_eq!(s["chat"], false);
    assert_eq!(s["sampling"], "greedy");
    let tasks = r["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert_eq!(tasks[0]["name"], "niah_single_1");
    assert_eq!(tasks[0]["family"], "niah");
    assert_eq!(tasks[0]["metric"], "string_match_all");
    assert_eq!(tasks[0]["new_tokens"], 128);
    assert_eq!(tasks[1]["new_tokens"], 30);
    assert_eq!(r["sources"]["words"], "data/ruler/words.txt");
    assert_eq!(r["schedules"][0]["mode"], "keep09/attention");

    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 2 * 2, "task × sample × mode");
    for row in rows {
        for key in ["task", "mode", "prediction"] {
            assert!(row[key].is_string(), "{key} in {row}");
        }
        for key in [
            "length",
            "sample",
            "prompt_tokens",
            "haystack_units",
            "final_tokens",
            "flops",
            "scorer_flops",
            "generated_tokens",
        ] {
            assert!(row[key].is_u64(), "{key} in {row}");
        }
        assert!(row["prompt_tokens"].as_u64().unwrap() <= 256);
        assert!(in_range(&row["score"], 0.0, 100.0), "{row}");
        assert!(!row["references"].as_array().unwrap().is_empty());
        let baseline = row["mode"] == "baseline";
        assert_eq!(
            row["flop_reduction"].as_f64() == Some(0.0),
            baseline,
            "{row}"
        );
        // The needle's value (niah) and the chain's variables (vt) are in the prompt: the
        // unpruned prefill keeps all of them, a pruned one a share.
        if baseline {
            assert_eq!(row["evidence_kept"], 1.0, "{row}");
            assert!(row.get("evidence_by_stage").is_none(), "{row}");
        } else {
            assert!(in_range(&row["evidence_kept"], 0.0, 1.0), "{row}");
            // Per stage, in layer order; a share never comes back once dropped, and the
            // last stage's share is the row's.
            let stages = row["evidence_by_stage"].as_array().unwrap();
            assert!(!stages.is_empty(), "{row}");
            let shares: Vec<f64> = stages.iter().map(|s| s[1].as_f64().unwrap()).collect();
            assert!(shares.windows(2).all(|w| w[1] <= w[0] + 1e-12), "{row}");
            assert_eq!(Some(*shares.last().unwrap()), row["evidence_kept"].as_f64());
        }
        if row["task"] == "niah_single_1" {
            assert!(
                row["depth"].is_f64() && row["answer_position"].is_u64(),
                "{row}"
            );
        } else {
            assert!(
                row["depth"].is_null() && row["answer_position"].is_u64(),
                "{row}"
            );
        }
    }
    let cells = r["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2 * 2, "task × mode");
    for c in cells {
        assert!(in_range(&c["score"], 0.0, 100.0), "{c}");
        assert!(in_range(&c["baseline_score"], 0.0, 100.0), "{c}");
        assert!(in_range(&c["agreement"], 0.0, 1.0), "{c}");
        assert!(in_range(&c["flop_reduction"], 0.0, 1.0), "{c}");
        assert_eq!(c["samples"], 2);
        assert_eq!(c["metric"], "string_match_all");
        assert!(in_range(&c["evidence_kept"], 0.0, 1.0), "{c}");
        if c["mode"] == "baseline" {
            assert_eq!(c["score"], c["baseline_score"]);
            assert_eq!(c["agreement"], 1.0);
            assert_eq!(c["evidence_kept"], 1.0);
        } else {
            assert!(c["flop_reduction"].as_f64().unwrap() > 0.1, "{c}");
        }
    }
    let averages = r["averages"].as_array().unwrap();
    assert_eq!(averages.len(), 2);
    assert_eq!(averages[1]["tasks"], 2);
    let svg = std::fs::read_to_string(json.with_extension("svg")).expect("an SVG beside the JSON");
    assert!(svg.contains("<svg") && svg.contains("keep09"));
}

#[test]
fn tiny_runs_are_deterministic_and_an_empty_schedule_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str| {
        let json = dir.path().join(name);
        let plot = dir.path().join("plot.svg");
        ok(&[
            "eval",
            "ruler",
            "--model",
            "synthetic:tiny",
            "--seed",
            "5",
            "--tasks",
            "niah_multikey_2,fwe",
            "--length",
            "700,900",
            "--samples",
            "2",
            "--new-tokens",
            "3",
            "--schedule",
            "none,keep09",
            "--scorer",
            "random",
            "--quiet",
            "--plot",
            plot.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(plot.is_file());
        let mut r = read_json(&json);
        r.as_object_mut().unwrap().remove("date");
        r
    };
    let (a, b) = (run("a.json"), run("b.json"));
    assert_eq!(a, b, "the same seed gives the same report");
    assert_eq!(a["settings"]["new_tokens"], 3);
    assert_eq!(a["cells"].as_array().unwrap().len(), 2 * 2 * 3);
    assert_eq!(a["averages"].as_array().unwrap().len(), 2 * 3);
    for c in a["cells"].as_array().unwrap() {
        if c["mode"] == "none" {
            assert_eq!(c["agreement"], 1.0, "{c}");
            assert_eq!(c["score"], c["baseline_score"], "{c}");
            assert_eq!(c["flop_reduction"], 0.0, "{c}");
        }
    }
    for row in a["rows"].as_array().unwrap() {
        let length = row["length"].as_u64().unwrap();
        let tokens = row["prompt_tokens"].as_u64().unwrap();
        assert!(tokens <= length, "{row}");
        assert!(row["generated_tokens"].as_u64().unwrap() <= 3);
    }
}

#[test]
fn bad_input_fails_in_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let json_arg = json.to_str().unwrap();
    let model = common::real_model_path();
    let model = model.to_str().unwrap();
    let base = ["eval", "ruler", "--model", model, "--json", json_arg];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    common::assert_fails_cleanly(
        &with(&["--tasks", "niah_single_1,needle_in_a_sock"]),
        &[],
        &[
            "needle_in_a_sock",
            "niah_single_1, niah_single_2",
            "cwe, fwe",
        ],
    );
    common::assert_fails_cleanly(&with(&["--tasks", "qa_1"]), &[], &["qa_1", "SQuAD"]);
    common::assert_fails_cleanly(
        &with(&["--tasks", "vt", "--length", "64"]),
        &[],
        &["task vt needs a --length of at least", "got 64"],
    );
    common::assert_fails_cleanly(
        &with(&["--tasks", "niah_single_1", "--length", "8192"]),
        &[],
        &["--length 8192", "128 new tokens", "context of 8192"],
    );
    common::assert_fails_cleanly(&with(&["--samples", "0"]), &[], &["--samples 0"]);
    assert!(!json.exists(), "no report after a failure");
}
