//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::{DType, Device, Tensor};
use sdtp::model::load::{default_model_path, load_model, LoadedModel, ModelSource};

/// The real SmolLM2 GGUF: `$SDTP_MODEL`, else the default cache path. The tests fail, not
/// skip, without it: `scripts/fetch_model.sh` fetches it (CI does).
pub fn real_model_path() -> PathBuf {
    let path = std::env::var_os("SDTP_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(default_model_path);
    assert!(
        path.is_file(),
        "test model missing at {}; run scripts/fetch_model.sh",
        path.display()
    );
    path
}

pub fn load_real_model() -> LoadedModel {
    load_model(
        &ModelSource::Gguf(real_model_path()),
        &Device::Cpu,
        DType::F32,
        0,
    )
    .expect("real model loads")
}

pub fn load_tiny_model(seed: u64) -> LoadedModel {
    load_model(
        &ModelSource::Synthetic("tiny".into()),
        &Device::Cpu,
        DType::F32,
        seed,
    )
    .expect("tiny synthetic model builds")
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("same shapes")
}

pub fn argmax(logits: &Tensor) -> u32 {
    logits.argmax(0).unwrap().to_scalar::<u32>().unwrap()
}

/// Runs the `sdtp` binary with `envs` added and returns (exit code, stdout, stderr).
pub fn run_sdtp(args: &[&str], envs: &[(&str, &Path)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sdtp"));
    cmd.args(args).env("RUST_LOG", "error");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("sdtp runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `sdtp` and asserts a clean failure: non-zero exit, no panic, exactly one stderr line
/// starting `error: ` that contains every one of `needles`. Returns stdout.
pub fn assert_fails_cleanly(args: &[&str], envs: &[(&str, &Path)], needles: &[&str]) -> String {
    let (code, stdout, stderr) = run_sdtp(args, envs);
    assert_ne!(code, 0, "{args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<&str> = stderr.trim().lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: expected one line, got {stderr:?}"
    );
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "{args:?}: {:?} lacks {needle:?}",
            lines[0]
        );
    }
    stdout
}
