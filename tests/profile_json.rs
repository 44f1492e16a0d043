//! `sdtp profile` end to end through the built binary: the JSON report's schema (not its
//! times), the markdown and CSV outputs, and the errors that must come before any output.
//!
//! The first test is CI's smoke run on the real default model
//! (`$SDTP_MODEL`, default `$SDTP_CACHE` or `~/.cache/sdtp`, then `models/SmolLM2-135M-Instruct.Q4_1.gguf`); it fails,
//! not skips, when the model is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// `$SDTP_MODEL`, else the default model where sdtp itself looks (`$SDTP_CACHE`, else
/// `~/.cache/sdtp`).
fn model_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SDTP_MODEL") {
        return PathBuf::from(path);
    }
    sdtp::model::load::default_model_path()
}

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

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no JSON report at {}: {e}", path.display()));
    serde_json::from_str(&text).expect("the report is valid JSON")
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

fn uint(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer in {v}"))
}

/// A summary object: n, median within [min, max], sd ≥ 0.
fn check_summary(s: &Value, n: u64, what: &str) {
    assert_eq!(uint(s, "n"), n, "{what}.n");
    let (min, median, max) = (num(s, "min"), num(s, "median"), num(s, "max"));
    assert!(min > 0.0 && min <= median && median <= max, "{what}: {s}");
    assert!(num(s, "sd") >= 0.0, "{what}.sd");
    assert!(
        num(s, "mean") >= min && num(s, "mean") <= max,
        "{what}.mean"
    );
}

/// The fields docs/profile.md promises, for `repeats` repetitions of `lengths` × modes.
fn check_report(r: &Value, command: &str, lengths: &[u64], modes: &[&str], repeats: u64) {
    assert_eq!(uint(r, "schema_version"), 1);
    assert_eq!(str_field(r, "sdtp_version"), env!("CARGO_PKG_VERSION"));
    let commit = str_field(r, "git_commit");
    assert!(
        commit == "unknown" || (commit.len() >= 7 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "git_commit {commit:?}"
    );
    let date = str_field(r, "date");
    assert!(
        date.len() == 20 && date.ends_with('Z') && date.as_bytes()[10] == b'T',
        "date {date:?}"
    );
    assert_eq!(str_field(r, "command"), command);
    assert_eq!(str_field(r, "device"), "cpu");
    assert_eq!(str_field(r, "dtype"), "f32");
    assert!(uint(r, "cpu_threads") >= 1);

    let model = &r["model"];
    assert!(!str_field(model, "name").is_empty());
    let num_layers = uint(model, "num_layers");
    let context = uint(model, "context_length");
    for key in [
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
    ] {
        assert!(uint(model, key) > 0, "model.{key}");
    }

    let settings = &r["settings"];
    assert_eq!(uint(settings, "repeats"), repeats);
    assert_eq!(str_field(settings, "sampling"), "greedy");
    assert_eq!(settings["stop_at_eos"], Value::Bool(false));
    assert_eq!(
        str_field(&r["prompt"], "source"),
        "data/text/eighty_days.jsonl"
    );
    assert!(uint(&r["prompt"], "source_tokens") > 50_000);
    assert_eq!(str_field(&r["memory"], "kind"), "peak_rss");

    let schedules = r["schedules"].as_array().expect("schedules is an array");
    let schedule_modes: Vec<&str> = schedules.iter().map(|s| str_field(s, "mode")).collect();
    assert_eq!(schedule_modes, modes);
    assert_eq!(str_field(&schedules[0], "name"), "none");
    assert!(schedules[0]["scorer"].is_null());
    for s in &schedules[1..] {
        assert_eq!(str_field(s, "scorer"), "attention");
        assert!(!s["stages"].as_array().unwrap().is_empty());
        let keep = num(s, "cumulative_keep");
        assert!(keep > 0.0 && keep < 1.0);
    }

    let results = r["results"].as_array().expect("results is an array");
    assert_eq!(results.len(), lengths.len() * modes.len());
    for (i, res) in results.iter().enumerate() {
        let length = lengths[i / modes.len()];
        let mode = modes[i % modes.len()];
        assert_eq!(uint(res, "length"), length);
        assert_eq!(str_field(res, "mode"), mode);
        assert!(length <= context);
        let per_layer: Vec<u64> = res["tokens_per_layer"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        assert_eq!(per_layer.len() as u64, num_layers);
        assert_eq!(per_layer[0], length);
        assert!(
            per_layer.windows(2).all(|w| w[1] <= w[0]),
            "tokens never grow"
        );

        let kept = &res["kept"];
        let final_tokens = uint(kept, "final_tokens");
        let stages = kept["stages"].as_array().unwrap();
        let flops = &res["flops"];
        assert!(uint(flops, "model") > 0);
        assert_eq!(
            uint(flops, "model"),
            uint(flops, "linear") + uint(flops, "attention") + uint(flops, "lm_head")
        );
        let summary = &res["summary"];
        check_summary(&summary["prefill_ms"], repeats, "prefill_ms");
        check_summary(&summary["ttft_ms"], repeats, "ttft_ms");
        check_summary(&summary["total_ms"], repeats, "total_ms");
        check_summary(&summary["peak_memory_bytes"], repeats, "peak_memory_bytes");
        assert!(num(&summary["ttft_ms"], "median") >= num(&summary["prefill_ms"], "median"));
        if command == "end2end" {
            check_summary(&summary["decode_ms"], repeats, "decode_ms");
            check_summary(&summary["decode_tok_s"], repeats, "decode_tok_s");
        } else {
            assert!(summary["decode_ms"].is_null());
        }
        let kv = uint(res, "kv_cache_bytes");
        assert!(kv > 0);
        check_decode_bandwidth(r, res, command);

        let reps = res["repetitions"].as_array().unwrap();
        assert_eq!(reps.len() as u64, repeats);
        for (index, rep) in reps.iter().enumerate() {
            assert_eq!(uint(rep, "index"), index as u64);
            assert!(uint(rep, "position") < modes.len() as u64);
            assert!(num(rep, "prefill_ms") > 0.0);
            assert!(num(rep, "total_ms") >= num(rep, "ttft_ms"));
            assert_eq!(uint(rep, "final_tokens"), final_tokens);
            assert_eq!(uint(rep, "kv_cache_bytes"), kv);
            let generated = if command == "end2end" {
                uint(settings, "new_tokens")
            } else {
                1
            };
            assert_eq!(uint(rep, "generated_tokens"), generated);
        }

        if mode == "baseline" {
            assert!(stages.is_empty());
            assert_eq!(final_tokens, length);
            assert_eq!(uint(flops, "scorer"), 0);
            assert!(res["speedup"].is_null());
            assert!(res["scorer"].is_null());
        } else {
            // Each stage keeps what it says, and the pruned run keeps less than it was given.
            assert!(!stages.is_empty());
            let mut tokens = length;
            for stage in stages {
                assert_eq!(uint(stage, "tokens_in"), tokens);
                let out = uint(stage, "tokens_out");
                assert!(out >= 1 && out < tokens, "stage {stage}");
                tokens = out;
            }
            assert_eq!(final_tokens, tokens);
            let ratio = num(kept, "final_ratio");
            assert!((ratio - final_tokens as f64 / length as f64).abs() < 1e-9);
            assert!(uint(flops, "scorer") > 0);
            let baseline = &results[i - i % modes.len()];
            assert!(kv < uint(baseline, "kv_cache_bytes"));
            assert!(uint(flops, "model") < uint(&baseline["flops"], "model"));
            let speedup = &res["speedup"];
            assert!(num(speedup, "prefill") > 0.0);
            assert!(num(speedup, "prefill_flop_ideal") > 1.0);
            assert!(num(speedup, "total") > 0.0);
            if command == "end2end" {
                assert!(num(speedup, "decode") > 0.0);
            }
        }
    }
}

/// The decode bandwidth fields of one result: bytes per decode token from the model's shape
/// (f32 weights and cache), bandwidth = bytes × tok/s, share = bandwidth / copy rate.
fn check_decode_bandwidth(r: &Value, res: &Value, command: &str) {
    let summary = &res["summary"];
    let fields = [
        "decode_bytes_per_token",
        "decode_weight_bytes_per_token",
        "decode_kv_bytes_per_token",
        "roofline_share",
    ];
    if command != "end2end" {
        assert!(r["roofline"].is_null(), "prefill has no roofline");
        assert!(summary["decode_bandwidth_gb_s"].is_null());
        for key in fields {
            assert!(res[key].is_null(), "{key} in prefill mode");
        }
        return;
    }
    let roofline = &r["roofline"];
    let copy_rate = num(roofline, "copy_rate_gb_s");
    assert!(
        (0.1..10_000.0).contains(&copy_rate),
        "copy rate {copy_rate}"
    );
    assert_eq!(uint(roofline, "probe_bytes"), 256 << 20);
    assert!(str_field(roofline, "description").contains("read + written"));

    let model = &r["model"];
    let m = |key: &str| uint(model, key);
    let layers = m("num_layers");
    // Every layer's cache is as long as the tokens it saw; one entry is K and V over the KV
    // heads in f32.
    let entry = 2 * m("num_key_value_heads") * m("head_dim") * 4;
    let held: u64 = res["tokens_per_layer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .sum();
    assert_eq!(uint(res, "kv_cache_bytes"), entry * held);
    // Step k of the new_tokens - 1 decode steps reads len + k entries per layer.
    let steps = uint(&r["settings"], "new_tokens") - 1;
    let kv = uint(res, "decode_kv_bytes_per_token");
    assert_eq!(kv, entry * held + entry * layers * (steps + 1) / 2);
    let weights = uint(res, "decode_weight_bytes_per_token");
    assert!(weights > 0 && weights <= m("weight_bytes"), "{weights}");
    let bytes = uint(res, "decode_bytes_per_token");
    assert_eq!(bytes, weights + kv);

    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    let bandwidth = &summary["decode_bandwidth_gb_s"];
    check_summary(
        bandwidth,
        uint(&summary["decode_tok_s"], "n"),
        "decode_bandwidth_gb_s",
    );
    let gb = bytes as f64 / 1e9;
    let median = num(bandwidth, "median");
    assert!(close(median, gb * num(&summary["decode_tok_s"], "median")));
    for rep in res["repetitions"].as_array().unwrap() {
        let expected = gb * num(rep, "decode_tok_s");
        assert!(close(num(rep, "decode_bandwidth_gb_s"), expected), "{rep}");
    }
    let share = num(res, "roofline_share");
    assert!(close(share, median / copy_rate), "{share}");
    assert!(share > 0.0 && share < 10.0, "roofline share {share}");
}

#[test]
fn end2end_smoke_on_the_default_model_writes_the_documented_json() {
    let model = model_path();
    assert!(
        model.is_file(),
        "test model {} is missing; fetch it with scripts/fetch_model.sh or set SDTP_MODEL",
        model.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("smoke.json");
    let log = dir.path().join("prune_log.jsonl");
    let stdout = ok(&sdtp(&[
        "profile",
        "end2end",
        "--model",
        model.to_str().unwrap(),
        "--length",
        "1024",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--new-tokens",
        "16",
        "--quiet",
        "--prune-log",
        log.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(
        stdout.contains("baseline") && stdout.contains("keep09"),
        "{stdout}"
    );
    let report = read_json(&json);
    check_report(&report, "end2end", &[1024], &["baseline", "keep09"], 1);
    assert_eq!(uint(&report["settings"], "new_tokens"), 16);
    assert_eq!(uint(&report["model"], "num_layers"), 30);
    // keep09 on 30 layers keeps 8 stages at 0.9: about 43% of the prompt.
    let keep09 = &report["results"][1];
    let ratio = num(&keep09["kept"], "final_ratio");
    assert!((0.38..0.48).contains(&ratio), "kept ratio {ratio}");
    // One prune-log line per layer for the one measured pruned prefill.
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines.lines().count(), 30);
    assert!(!json.with_extension("json.tmp").exists());
}

#[test]
fn synthetic_prefill_prints_markdown_and_writes_csv_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("out").join("p.csv");
    let json = dir.path().join("p.json");
    let stdout = ok(&sdtp(&[
        "profile",
        "prefill",
        "--model",
        "synthetic:tiny",
        "--length",
        "64,128",
        "--length",
        "64",
        "--schedule",
        "keep09,keep07",
        "--repeats",
        "2",
        "--warmup",
        "0",
        "--format",
        "md",
        "--quiet",
        "--no-prune-log",
        "--csv",
        csv.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]));
    let table: Vec<&str> = stdout.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(table.len(), 2 + 2 * 3, "{stdout}");
    assert!(
        table[0].contains("| length | mode | prefill ms |"),
        "{}",
        table[0]
    );
    assert!(table[1].starts_with("| --- | --- | ---: |"), "{}", table[1]);
    assert!(table[2].starts_with("| 64 | baseline |"), "{}", table[2]);
    assert!(table[7].starts_with("| 128 | keep07 |"), "{}", table[7]);
    assert!(
        !stdout.contains("decode"),
        "prefill mode has no decode columns"
    );

    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), 1 + 6);
    let header: Vec<&str> = rows[0].split(',').collect();
    assert_eq!(header[..3], ["length", "mode", "schedule"]);
    for row in &rows[1..] {
        assert_eq!(row.split(',').count(), header.len(), "{row}");
    }
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let keep07: Vec<&str> = rows[3].split(',').collect();
    assert_eq!(keep07[col("mode")], "keep07");
    assert_eq!(keep07[col("model")], "synthetic:tiny");
    assert!(
        keep07[col("speedup_prefill_flop_ideal")]
            .parse::<f64>()
            .unwrap()
            > 1.0
    );

    let report = read_json(&json);
    check_report(
        &report,
        "prefill",
        &[64, 128],
        &["baseline", "keep09", "keep07"],
        2,
    );
    assert_eq!(report["model"]["synthetic"], Value::Bool(true));
}

#[test]
fn synthetic_end2end_reports_decode_bandwidth_against_the_copy_rate() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("e.csv");
    let json = dir.path().join("e.json");
    let stdout = ok(&sdtp(&[
        "profile",
        "end2end",
        "--model",
        "synthetic:tiny",
        "--length",
        "64",
        "--new-tokens",
        "8",
        "--repeats",
        "2",
        "--warmup",
        "0",
        "--quiet",
        "--no-prune-log",
        "--csv",
        csv.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]));
    let report = read_json(&json);
    check_report(&report, "end2end", &[64], &["baseline", "keep09"], 2);

    // synthetic:tiny ties its embeddings to the lm_head and holds f32 weights: a decode
    // step reads every weight the model has, the table read once as the head. 6 layers of
    // hidden 64, intermediate 128, 4 heads and 2 KV heads of 16: q, o 64×64; k, v 64×32;
    // MLP 3×64×128; the head 512×64; 13 norms of 64.
    let weights = 4 * (6 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128) + 512 * 64 + 13 * 64);
    assert_eq!(weights, 1_019_136);
    assert_eq!(uint(&report["model"], "weight_bytes"), weights);
    let results = report["results"].as_array().unwrap();
    let (base, keep09) = (&results[0], &results[1]);
    for res in results {
        assert_eq!(uint(res, "decode_weight_bytes_per_token"), weights);
    }
    // The baseline's 6 layers hold 64 tokens each, 256 bytes per token per layer; 7 steps
    // add 4 entries per layer on average.
    assert_eq!(
        uint(base, "decode_kv_bytes_per_token"),
        256 * (6 * 64 + 6 * 4)
    );
    // Pruning shortens the caches that every decode step reads.
    assert!(uint(keep09, "decode_kv_bytes_per_token") < uint(base, "decode_kv_bytes_per_token"));

    // The table's columns and the note that names the copy rate.
    assert!(
        stdout.contains("decode GB/s") && stdout.contains("% roofline"),
        "{stdout}"
    );
    let copy_rate = num(&report["roofline"], "copy_rate_gb_s");
    assert!(
        stdout.contains(&format!("copy rate measured at start, {copy_rate:.1} GB/s")),
        "{stdout}"
    );
    let base_row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("64") && l.contains("baseline"))
        .unwrap();
    let share = 100.0 * num(base, "roofline_share");
    assert!(base_row.contains(&format!("{share:.1}%")), "{base_row}");

    // The CSV carries the same numbers.
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    let col = |name: &str| rows[0].iter().position(|h| *h == name).unwrap();
    assert_eq!(rows.len(), 3);
    let cell = |row: usize, name: &str| rows[row][col(name)].parse::<f64>().unwrap();
    assert_eq!(
        cell(1, "decode_bytes_per_token") as u64,
        uint(base, "decode_bytes_per_token")
    );
    assert_eq!(
        cell(2, "decode_kv_bytes_per_token") as u64,
        uint(keep09, "decode_kv_bytes_per_token")
    );
    let near = |a: f64, b: f64| (a - b).abs() <= 1e-4 + 1e-6 * b.abs();
    assert!(near(
        cell(1, "decode_bandwidth_gb_s_median"),
        num(&base["summary"]["decode_bandwidth_gb_s"], "median")
    ));
    assert!(near(
        cell(2, "roofline_share"),
        num(keep09, "roofline_share")
    ));
    assert!(near(cell(1, "copy_rate_gb_s"), copy_rate));
}

#[test]
fn a_length_above_the_context_fails_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("never.json");
    let csv = dir.path().join("never.csv");
    let out = sdtp(&[
        "profile",
        "end2end",
        "--model",
        "synthetic:tiny",
        "--length",
        "1024,131073",
        "--new-tokens",
        "4",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains(
            "length 131073 with 4 new tokens is above the model's context of 131072 tokens"
        ),
        "{stderr}"
    );
    assert!(errors[0].contains("at most 131069"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(!json.exists() && !csv.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn skip_too_long_drops_only_the_lengths_that_do_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let out = sdtp(&[
        "profile",
        "prefill",
        "--model",
        "synthetic:tiny",
        "--length",
        "32,200000",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--skip-too-long",
        "--quiet",
        "--no-prune-log",
        "--json",
        json.to_str().unwrap(),
    ]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped: length 200000 is above the model's context"),
        "{stderr}"
    );
    let report = read_json(&json);
    let lengths: Vec<u64> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| uint(r, "length"))
        .collect();
    assert_eq!(lengths, [32, 32]);
}

#[test]
fn plot_draws_an_svg_of_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    ok(&sdtp(&[
        "profile",
        "prefill",
        "--model",
        "synthetic:tiny",
        "--length",
        "32,64",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--quiet",
        "--no-prune-log",
        "--json",
        json.to_str().unwrap(),
    ]));
    ok(&sdtp(&[
        "profile",
        "plot",
        "--input",
        json.to_str().unwrap(),
    ]));
    let svg = std::fs::read_to_string(json.with_extension("svg")).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "{}",
        &svg[..80]
    );
    assert!(svg.contains("keep09 measured") && svg.contains("keep09 FLOP ideal"));
    assert!(svg.contains("Prefill time"));
}

#[test]
fn prompt_prints_exactly_the_asked_tokens_of_the_shipped_text() {
    // Synthetic models read bytes as tokens, so N tokens are N bytes.
    let text = ok(&sdtp(&[
        "profile",
        "prompt",
        "--model",
        "synthetic:tiny",
        "--length",
        "100",
    ]));
    assert_eq!(text.len(), 100);
    assert!(
        text.starts_with("Mr. Phileas Fogg lived, in 1872"),
        "{text}"
    );
}
