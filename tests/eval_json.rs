//! `sdtp eval` through the built binary on the tiny synthetic model: the JSON reports'
//! schema (docs/eval.md), `--seed` determinism, the sweep's SVG, and errors that leave no
//! output behind.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn sdtp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sdtp"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("cannot run the sdtp binary")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "sdtp failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

/// A failure with a one-line error on stderr.
fn fails(out: &Output) -> String {
    assert!(!out.status.success(), "sdtp should have failed");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JSON report at {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the report is valid JSON")
}

fn prompts_file(dir: &Path) -> String {
    let path = dir.join("prompts.jsonl");
    let lines = [
        r#"{"id":"a","text":"Mr. Phileas Fogg lived, in 1872, at No. 7, Saville Row. Who lived there?"}"#,
        r#"{"id":"b","text":"Passepartout had tried many trades in London. What trades?","approx_tokens":60}"#,
        r#"{"id":"c","text":"The Mongolia was due at Suez on Wednesday, the 9th of October, at eleven o'clock. When?"}"#,
    ];
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.display().to_string()
}

/// The header every eval report carries.
fn check_header(r: &Value, command: &str, seed: u64) {
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["sdtp_version"], env!("CARGO_PKG_VERSION"));
    assert!(!r["git_commit"].as_str().unwrap().is_empty());
    assert!(r["date"].as_str().unwrap().ends_with('Z'));
    assert_eq!(r["command"], command);
    assert_eq!(r["model"]["name"], "synthetic:tiny");
    assert_eq!(r["model"]["synthetic"], true);
    assert_eq!(r["model"]["num_layers"], 6);
    assert_eq!(r["device"], "cpu");
    assert_eq!(r["dtype"], "f32");
    assert!(r["cpu_threads"].as_u64().unwrap() >= 1);
    assert_eq!(r["seed"], seed);
}

#[test]
fn agreement_json_schema_and_determinism() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = prompts_file(dir.path());
    let run = |name: &str| {
        let json = dir.path().join(name);
        let args = [
            "eval",
            "agreement",
            "--model",
            "synthetic:tiny",
            "--seed",
            "42",
            "--prompts",
            &prompts,
            "--schedule",
            "none,keep09",
            "--scorer",
            "norm,random",
            "--continuation-tokens",
            "4",
            "--quiet",
            "--json",
            json.to_str().unwrap(),
        ];
        let stdout = ok(&sdtp(&args));
        (stdout, read_json(&json))
    };
    let (stdout, r) = run("a.json");
    assert!(stdout.contains("| keep09/random |"), "{stdout}");
    check_header(&r, "agreement", 42);
    assert_eq!(r["settings"]["continuation_tokens"], 4);
    assert_eq!(r["settings"]["top_k"], 5);
    assert_eq!(r["settings"]["sampling"], "greedy");
    let p = &r["prompts"];
    assert_eq!(p["in_set"], 3);
    assert_eq!(p["run"], 3);
    assert_eq!(p["chat"], false, "the tiny model has no chat template");
    let modes: Vec<&str> = r["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["none", "keep09/norm", "keep09/random"]);
    assert_eq!(r["schedules"][1]["scorer"], "norm");
    assert!(!r["schedules"][1]["stages"].as_array().unwrap().is_empty());
    assert_eq!(r["baseline"].as_array().unwrap().len(), 3);
    assert_eq!(r["rows"].as_array().unwrap().len(), 9);
    let summary = r["summary"].as_array().unwrap();
    assert_eq!(summary.len(), 3);
    let none = &summary[0];
    assert_eq!(none["first_token_agreement"], 1.0);
    assert_eq!(none["kl_mean"], 0.0);
    assert_eq!(none["continuation_identical"], 1.0);
    for s in summary {
        for key in [
            "prompts",
            "first_token_agreement",
            "kl_mean",
            "kl_p99",
            "kl_max",
            "top_k_overlap_mean",
            "continuation_match_mean",
            "final_keep_mean",
            "flop_speedup",
            "flop_reduction",
        ] {
            assert!(s[key].is_number(), "{key} in {s}");
        }
    }
    let row = &r["rows"][1];
    for key in ["prompt_id", "mode", "continuation_text"] {
        assert!(row[key].is_string(), "{key} in {row}");
    }
    for key in [
        "prompt_tokens",
        "final_tokens",
        "first_token",
        "kl",
        "top_k_overlap",
        "flops",
        "continuation_match",
    ] {
        assert!(row[key].is_number(), "{key} in {row}");
    }
    assert!(row["first_token_agree"].is_boolean());

    // --seed makes it deterministic: the same report but for the date.
    let (_, mut again) = run("b.json");
    let mut first = r.clone();
    first["date"] = Value::Null;
    again["date"] = Value::Null;
    assert_eq!(first, again);
}

#[test]
fn sweep_writes_json_and_a_pareto_svg_and_plot_redraws_it() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = prompts_file(dir.path());
    let json = dir.path().join("sweep.json");
    let stdout = ok(&sdtp(&[
        "eval",
        "sweep",
        "--model",
        "synthetic:tiny",
        "--prompts",
        &prompts,
        "--limit",
        "2",
        "--keep-ratio",
        "0.9,0.5",
        "--scorer",
        "norm,random",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(stdout.contains("| 0.5 | random |"), "{stdout}");
    let r = read_json(&json);
    check_header(&r, "sweep", 299_792_458);
    assert_eq!(r["settings"]["keep_ratios"], serde_json::json!([0.9, 0.5]));
    assert_eq!(r["settings"]["layers_from"], "keep09");
    assert_eq!(r["prompts"]["run"], 2);
    let points = r["points"].as_array().unwrap();
    assert_eq!(points.len(), 5, "baseline + 2 ratios × 2 scorers");
    assert_eq!(points[0]["mode"], "baseline");
    // Every point off the frontier is dominated by one on it.
    let xy = |p: &Value| {
        (
            p["flop_reduction"].as_f64().unwrap(),
            p["first_token_agreement"].as_f64().unwrap(),
        )
    };
    let front: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p["pareto_agreement"] == true)
        .map(xy)
        .collect();
    assert!(!front.is_empty());
    for p in points.iter().filter(|p| p["pareto_agreement"] == false) {
        let (x, y) = xy(p);
        assert!(front.iter().any(|&(fx, fy)| fx >= x && fy >= y), "{p}");
    }
    assert!(points.iter().any(|p| p["mode"] == "keep0.5/norm"));
    for p in points {
        assert!(p["flop_reduction"].is_number() && p["pareto_kl"].is_boolean());
    }
    let svg = std::fs::read_to_string(json.with_extension("svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Pareto frontier"));

    let redrawn = dir.path().join("again.svg");
    ok(&sdtp(&[
        "eval",
        "plot",
        "--input",
        json.to_str().unwrap(),
        "--output",
        redrawn.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read_to_string(redrawn).unwrap(), svg);
}

#[test]
fn passkey_and_perplexity_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("passkey.json");
    let stdout = ok(&sdtp(&[
        "eval",
        "passkey",
        "--model",
        "synthetic:tiny",
        "--length",
        "400,600",
        "--depth",
        "0,1",
        "--trials",
        "2",
        "--new-tokens",
        "3",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(stdout.contains("baseline: length \\ depth"), "{stdout}");
    let r = read_json(&json);
    check_header(&r, "passkey", 299_792_458);
    assert_eq!(r["settings"]["lengths"], serde_json::json!([400, 600]));
    assert_eq!(r["settings"]["trials"], 2);
    assert!(r["format"]["filler"]
        .as_str()
        .unwrap()
        .contains("The grass is green."));
    assert_eq!(r["cells"].as_array().unwrap().len(), 2 * 2 * 2);
    assert_eq!(r["rows"].as_array().unwrap().len(), 2 * 2 * 2 * 2);
    for row in r["rows"].as_array().unwrap() {
        assert_eq!(row["key"].as_str().unwrap().len(), 5);
        assert!(row["prompt_tokens"].as_u64().unwrap() <= row["length"].as_u64().unwrap());
        assert!(row["correct"].is_boolean());
        // Where the key was lost: per stage for a pruned mode, absent for the baseline.
        match row["key_by_stage"].as_array() {
            None => assert_eq!(row["mode"], "baseline", "{row}"),
            Some(stages) => {
                assert_ne!(row["mode"], "baseline", "{row}");
                let layers: Vec<u64> = stages.iter().map(|s| s[0].as_u64().unwrap()).collect();
                let shares: Vec<f64> = stages.iter().map(|s| s[1].as_f64().unwrap()).collect();
                assert!(!layers.is_empty() && layers.windows(2).all(|w| w[0] < w[1]));
                assert!(shares.iter().all(|s| (0.0..=1.0).contains(s)), "{row}");
                assert!(shares.windows(2).all(|w| w[1] <= w[0] + 1e-12), "{row}");
            }
        }
    }

    let text = dir.path().join("text.txt");
    std::fs::write(&text, "Around the world in eighty days. ".repeat(30)).unwrap();
    let json = dir.path().join("ppl.json");
    ok(&sdtp(&[
        "eval",
        "perplexity",
        "--model",
        "synthetic:tiny",
        "--text-file",
        text.to_str().unwrap(),
        "--context",
        "200",
        "--continuation",
        "40",
        "--windows",
        "3",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ]));
    let r = read_json(&json);
    check_header(&r, "perplexity", 299_792_458);
    assert_eq!(r["settings"]["stride"], 240);
    assert_eq!(r["text"]["tokens"], 990);
    let summary = r["summary"].as_array().unwrap();
    assert_eq!(summary[0]["mode"], "baseline");
    assert_eq!(summary[0]["windows"], 3);
    assert_eq!(summary[0]["tokens_scored"], 120);
    assert_eq!(summary[1]["mode"], "keep09/attention");
    assert!(summary[1]["perplexity_ratio"].is_number());
}

#[test]
fn errors_are_one_line_and_leave_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = prompts_file(dir.path());
    let json = dir.path().join("never.json");
    let j = json.to_str().unwrap();
    let cases: [&[&str]; 6] = [
        &[
            "eval",
            "agreement",
            "--model",
            "synthetic:tiny",
            "--prompts",
            &prompts,
            "--scorer",
            "magic",
            "--json",
            j,
        ],
        &[
            "eval",
            "agreement",
            "--model",
            "synthetic:tiny",
            "--prompts",
            &prompts,
            "--limit",
            "0",
            "--json",
            j,
        ],
        &[
            "eval",
            "agreement",
            "--model",
            "synthetic:tiny",
            "--prompts",
            "/no/such.jsonl",
            "--json",
            j,
        ],
        &[
            "eval",
            "agreement",
            "--model",
            "synthetic:tiny",
            "--prompts",
            &prompts,
            "--max-tokens",
            "5",
            "--json",
            j,
        ],
        &[
            "eval",
            "passkey",
            "--model",
            "synthetic:tiny",
            "--depth",
            "1.5",
            "--json",
            j,
        ],
        &[
            "eval",
            "sweep",
            "--model",
            "synthetic:tiny",
            "--keep-ratio",
            "0",
            "--json",
            j,
        ],
    ];
    for args in cases {
        let err = fails(&sdtp(args));
        assert!(!json.exists(), "{args:?} left a report: {err}");
    }
    let err = fails(&sdtp(&[
        "eval",
        "passkey",
        "--model",
        "synthetic:tiny",
        "--length",
        "50",
    ]));
    assert!(err.contains("at least"), "{err}");
}
